// The shim's distributed part: PyTorch's c10d engine (TCPStore rendezvous, ProcessGroupGloo)
// behind entry points with C linkage, and the two differentiable collectives that give exact
// gradients across processes (an all-gather whose backward sums the incoming gradient over the
// ranks and keeps this rank's slice, and an all-reduce whose backward all-reduces the gradient).
//
// Every function is `noexcept`: C++ exceptions (a peer that closed its connection, a timeout, a
// bad argument) are caught and reported through the return value (0 = success) and a message
// buffer; none crosses into Rust.
//
// Lifetimes: a group keeps its store alive; tensors returned through `out` are new heap
// `at::Tensor`s owned by the caller (tch's `C_tensor`). The differentiable collectives keep a
// plain pointer to their group in the autograd graph: the group must outlive every graph built
// with it (the Rust side holds it for the whole run). A reducer keeps its group alive.
//
// Other backends (ProcessGroupNCCL, which lives in libtorch_cuda.so and needs the CUDA headers)
// are built by a separate library, `shim/dist_cuda.cpp`, that the binary opens at run time: it
// receives the store as a borrowed `c10d::Store*` (`directclr_dist_store_raw`) and hands back
// its `c10d::Backend*` as one owned reference, which `directclr_dist_group_from_backend` wraps
// into a group like Gloo's, so that every collective below serves both.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#ifdef DIRECTCLR_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include "guarded.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

struct DirectclrStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct DirectclrGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
  c10::intrusive_ptr<c10d::Store> store;
  int rank;
  int size;
  // The same backend behind a c10d::ProcessGroup, the type c10d::Reducer talks to (its
  // collectives go through the c10d dispatcher ops to `backend`).
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

// c10d's DDP engine over a group: gradient buckets whose all-reduces start from autograd hooks
// as soon as their last gradient is accumulated, and are waited for (and the averages written
// into the gradients) by a callback at the end of the backward pass.
struct DirectclrReducer {
  std::unique_ptr<c10d::Reducer> reducer;
};

struct DirectclrWork {
  c10::intrusive_ptr<c10d::Work> work;
};

namespace {

using directclr_shim::guarded;

// Runs one collective to completion; a failure (peer gone, timeout) throws.
void finish(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait();
}

// In-place sum of `t` (contiguous) over the ranks.
void all_reduce_sum(DirectclrGroup* g, at::Tensor& t) {
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
  finish(g->backend->allreduce(ts, o));
}

// [n, ...] on every rank → [size · n, ...], rank r's rows at r·n.
at::Tensor all_gather_cat(DirectclrGroup* g, const at::Tensor& x) {
  at::Tensor input = x.contiguous();
  std::vector<at::Tensor> inputs{input};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < g->size; ++r) {
    outputs[0].push_back(at::empty_like(input));
  }
  finish(g->backend->allgather(outputs, inputs));
  return at::cat(outputs[0], 0);
}

DirectclrGroup* group_of(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<DirectclrGroup*>(ctx->saved_data["group"].toInt());
}

// y = concat over ranks of x. The loss on every rank is a function of all ranks' rows, so
// d(Σ_ranks loss_rank)/dx_r = Σ_ranks (incoming gradient on that rank)[rows of r].
struct AllGatherFn : public torch::autograd::Function<AllGatherFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t group) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["rows"] = x.size(0);
    return all_gather_cat(reinterpret_cast<DirectclrGroup*>(group), x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    DirectclrGroup* g = group_of(ctx);
    int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor grad = grads[0].contiguous().clone();
    all_reduce_sum(g, grad);
    return {grad.narrow(0, g->rank * rows, rows).contiguous(), at::Tensor()};
  }
};

// y = Σ_ranks x; its gradient is Σ_ranks (incoming gradient) on every rank.
struct AllReduceFn : public torch::autograd::Function<AllReduceFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t group) {
    ctx->saved_data["group"] = group;
    at::Tensor y = x.contiguous().clone();
    all_reduce_sum(reinterpret_cast<DirectclrGroup*>(group), y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor grad = grads[0].contiguous().clone();
    all_reduce_sum(group_of(ctx), grad);
    return {grad, at::Tensor()};
  }
};

// A group over `store` carried by `backend` (of `type`): Gloo serves CPU and CUDA tensors, NCCL
// CUDA ones.
DirectclrGroup* make_group(const c10::intrusive_ptr<c10d::Store>& store,
                           c10::intrusive_ptr<c10d::Backend> backend,
                           c10d::ProcessGroup::BackendType type, int rank, int size) {
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  // setBackend copies the group's bound device onto the backend: keep the backend's.
  pg->setBoundDeviceId(backend->getBoundDeviceId());
  pg->setDefaultBackend(type);
  if (type == c10d::ProcessGroup::BackendType::GLOO) {
    pg->setBackend(c10::DeviceType::CPU, type, backend);
  }
  pg->setBackend(c10::DeviceType::CUDA, type, backend);
  return new DirectclrGroup{backend, store, rank, size, pg};
}

}  // namespace

extern "C" {

// Rendezvous: a TCPStore at host:port. Rank 0 serves it (`is_server`) and waits until
// `world_size` processes have joined; the others connect, retrying until `timeout_ms`.
int directclr_dist_store_new(const char* host, int port, int is_server, int world_size,
                             int64_t timeout_ms, DirectclrStore** out, char* err,
                             size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = is_server != 0;
    o.numWorkers = world_size;
    o.waitWorkers = true;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
    *out = new DirectclrStore{store};
  });
}

void directclr_dist_store_free(DirectclrStore* s) noexcept { delete s; }

// A Gloo process group over `store`. Its transport binds to the network interface named by
// `interface` when non-empty (GLOO_SOCKET_IFNAME), else to the address of this host's name
// (c10d's default device). Collectives fail after `timeout_ms` without progress.
int directclr_dist_gloo_new(DirectclrStore* store, int rank, int size, int64_t timeout_ms,
                            const char* interface, DirectclrGroup** out, char* err,
                            size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
#ifndef DIRECTCLR_WITH_GLOO
    (void)store, (void)rank, (void)size, (void)timeout_ms, (void)interface, (void)out;
    throw std::runtime_error(
        "this build of directclr has no Gloo process group (the cargo feature `dist` is off): "
        "rebuild with default features for multi-process CPU training");
#else
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    if (interface != nullptr && interface[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // A prefix per group, as torch.distributed does, so that a later group on the same store
    // does not read this one's keys.
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("directclr/gloo/0", store->store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, opts);
    *out = make_group(store->store, pg, c10d::ProcessGroup::BackendType::GLOO, rank, size);
#endif
  });
}

// The store of a handle as a borrowed `c10d::Store*` (for the CUDA library; it takes its own
// reference).
void* directclr_dist_store_raw(DirectclrStore* s) noexcept { return s->store.get(); }

// Wraps `backend` (a `c10d::Backend*` carrying one owned reference, which this call takes over
// even when it fails) of kind `kind` (1 = NCCL) into a group over `store`.
int directclr_dist_group_from_backend(DirectclrStore* store, void* backend, int kind, int rank,
                                      int size, DirectclrGroup** out, char* err,
                                      size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    auto b = c10::intrusive_ptr<c10d::Backend>::reclaim(static_cast<c10d::Backend*>(backend));
    if (kind != 1) {
      throw std::invalid_argument("unknown backend kind " + std::to_string(kind));
    }
    if (b->getRank() != rank || b->getSize() != size) {
      throw std::invalid_argument("the backend's rank and size differ from the group's");
    }
    *out = make_group(store->store, b, c10d::ProcessGroup::BackendType::NCCL, rank, size);
  });
}

// Frees a group. NCCL's communicators are shut down first (as destroy_process_group does);
// a failure there is ignored, the process is ending its run anyway.
void directclr_dist_group_free(DirectclrGroup* g) noexcept {
  if (g == nullptr) {
    return;
  }
  try {
    if (g->pg->getBackendType() == c10d::ProcessGroup::BackendType::NCCL) {
      g->pg->shutdown();
    }
  } catch (...) {
  }
  delete g;
}

// Starts an in-place sum of `t` (contiguous, same shape on every rank) over the ranks.
int directclr_dist_all_reduce_start(DirectclrGroup* g, at::Tensor* t, DirectclrWork** out,
                                    char* err, size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    if (!t->is_contiguous()) {
      throw std::invalid_argument("all-reduce needs a contiguous tensor");
    }
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    *out = new DirectclrWork{g->backend->allreduce(ts, o)};
  });
}

// Waits for a started collective and frees its handle (also when it failed).
int directclr_dist_work_wait(DirectclrWork* w, char* err, size_t err_len) noexcept {
  int rc = guarded(err, err_len, [&] { finish(w->work); });
  delete w;
  return rc;
}

// In-place broadcast of `t` from rank `root`.
int directclr_dist_broadcast(DirectclrGroup* g, at::Tensor* t, int root, char* err,
                             size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    if (!t->is_contiguous()) {
      throw std::invalid_argument("broadcast needs a contiguous tensor");
    }
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    finish(g->backend->broadcast(ts, o));
  });
}

// Waits until every rank has reached this call.
int directclr_dist_barrier(DirectclrGroup* g, char* err, size_t err_len) noexcept {
  return guarded(err, err_len, [&] { finish(g->backend->barrier()); });
}

// *out = the differentiable all-gather of `x` ([n, ...] on every rank, the same n) →
// [size · n, ...]; backward: the gradient summed over ranks, this rank's rows.
int directclr_dist_all_gather_grad(DirectclrGroup* g, const at::Tensor* x, at::Tensor** out,
                                   char* err, size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    at::Tensor y = AllGatherFn::apply(*x, reinterpret_cast<int64_t>(g));
    *out = new at::Tensor(std::move(y));
  });
}

// *out = the differentiable sum of `x` over the ranks; backward: the gradient summed over ranks.
int directclr_dist_all_reduce_grad(DirectclrGroup* g, const at::Tensor* x, at::Tensor** out,
                                   char* err, size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    at::Tensor y = AllReduceFn::apply(*x, reinterpret_cast<int64_t>(g));
    *out = new at::Tensor(std::move(y));
  });
}

// A c10d::Reducer (the engine of PyTorch's DistributedDataParallel) over the `n` parameters
// `params` (leaf tensors that require gradients, the same shapes and strides on every rank;
// checked across the ranks here, as DDP does). `bucket_sizes[b]` consecutive entries of
// `bucket_params` (indices into `params`) form bucket b, the order in which the buckets are
// all-reduced (gradients that are ready first, first). Every parameter must receive a gradient
// in every backward pass. After the first pass the buckets are rebuilt once, in the order the
// gradients arrived on rank 0, with at most `first_bucket_bytes` in the first bucket and
// `bucket_bytes` in the others (DDP's defaults: 1 MiB and 25 MiB).
int directclr_dist_reducer_new(DirectclrGroup* g, const at::Tensor* const* params, size_t n,
                               const size_t* bucket_params, const size_t* bucket_sizes,
                               size_t n_buckets, int64_t bucket_bytes,
                               int64_t first_bucket_bytes, DirectclrReducer** out, char* err,
                               size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ps;
    ps.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (!params[i]->requires_grad() || !params[i]->is_leaf()) {
        throw std::invalid_argument("parameter " + std::to_string(i) +
                                    " is not a leaf tensor that requires a gradient");
      }
      ps.push_back(*params[i]);
    }
    std::vector<std::vector<size_t>> buckets(n_buckets);
    size_t at = 0;
    for (size_t b = 0; b < n_buckets; ++b) {
      for (size_t k = 0; k < bucket_sizes[b]; ++k) {
        if (bucket_params[at] >= n) {
          throw std::invalid_argument("bucket index out of range");
        }
        buckets[b].push_back(bucket_params[at++]);
      }
    }
    if (at != n) {
      throw std::invalid_argument("the buckets do not hold every parameter once");
    }
    c10d::verify_params_across_processes(g->pg, ps, std::nullopt);
    auto r = std::make_unique<c10d::Reducer>(
        std::move(ps), std::move(buckets), g->pg,
        /*expect_sparse_gradients=*/std::vector<bool>(n, false), bucket_bytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
        /*param_names=*/std::unordered_map<size_t, std::string>(), first_bucket_bytes,
        /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
        /*bucket_bytes_cap_list=*/std::vector<int64_t>());
    *out = new DirectclrReducer{std::move(r)};
  });
}

void directclr_dist_reducer_free(DirectclrReducer* r) noexcept {
  try {
    delete r;
  } catch (...) {
  }
}

// The backward pass of `loss` (a scalar) with the gradients averaged over the ranks: each
// bucket's all-reduce starts as soon as its gradients are accumulated, and the pass ends once
// every average is in its parameter's `.grad`. Returns 0 on success, 1 on a failure (message in
// `err`), 2 when the pass completed but some parameter received no gradient (its bucket was
// never reduced; the gradients are then not averaged).
int directclr_dist_reducer_backward(DirectclrReducer* r, const at::Tensor* loss, char* err,
                                    size_t err_len) noexcept {
  int rc = guarded(err, err_len, [&] {
    // After the first pass (and only then): buckets in the order rank 0's gradients arrived,
    // broadcast from rank 0 so that every rank reduces the same buckets (DDP does this before
    // its second forward pass).
    r->reducer->rebuild_buckets();
    r->reducer->prepare_for_backward({});
    loss->backward();
  });
  if (rc != 0) {
    return rc;
  }
  return guarded(err, err_len, [&] { r->reducer->check_finalized(); }) == 0 ? 0 : 2;
}

}  // extern "C"
