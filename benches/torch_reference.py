"""What the PyTorch reference steps of benches/train and benches/gpu share: the authors' LARS
(facebookresearch/directclr main.py, as in Barlow Twins) and their InfoNCE (normalised,
cross-view, symmetric)."""
import torch
import torch.nn.functional as F


class LARS(torch.optim.Optimizer):
    """The authors' LARS: 1-d parameters get neither weight decay nor the trust ratio."""

    def __init__(self, params, lr, weight_decay=1e-6, momentum=0.9, eta=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, (g["eta"] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def info_nce(z1, z2, tau=0.1):
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    labels = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * F.cross_entropy(z1 @ z2.T / tau, labels) + 0.5 * F.cross_entropy(z2 @ z1.T / tau, labels)
