//! A pickle reader that executes nothing: the opcodes PyTorch's `torch.save` writes
//! (protocols 2–5), building plain values, with an allow-list of globals in the spirit of
//! PyTorch's own `weights_only=True` unpickler. Any other global — any code a pickle could
//! name — is refused with an error naming it.
//!
//! Allowed: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` (and `_rebuild_parameter_with_state`), `torch.Size`, the
//! typed storage classes `torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`,
//! and plain containers and primitives. Storages arrive as persistent ids
//! `('storage', type, key, location, numel)`; their bytes are not read here.
//!
//! Bounds: every length is checked against the bytes left; containers are shared (`Rc`), so a
//! memo reference costs nothing however often it is repeated; at most [`MAX_OPS`] opcodes.

use std::collections::HashMap;
use std::rc::Rc;

use super::matrix::ElementType;

/// The most opcodes executed (a ResNet-50 state dict's pickle has about 10⁴).
pub const MAX_OPS: usize = 10_000_000;

/// A storage named by a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type of the storage (from its class, e.g. `FloatStorage`), or None for a
    /// storage class that is allowed but not a float (e.g. `LongStorage`).
    pub element: Option<ElementType>,
    /// The storage's class name, for messages.
    pub class: String,
    /// The archive entry `data/<key>`.
    pub key: String,
    /// Number of elements in the storage.
    pub numel: u64,
}

/// A tensor rebuilt by `_rebuild_tensor_v2`: a view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// Offset in elements.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
}

/// A value of the pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A tuple (also `torch.Size`).
    Tuple(Rc<Vec<Value>>),
    /// A list.
    List(Rc<Vec<Value>>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Rc<Vec<(Value, Value)>>),
    /// A tensor.
    Tensor(Rc<TensorRef>),
    /// A storage (a persistent id).
    Storage(Rc<StorageRef>),
    /// An allowed global, before it is called.
    Global(Global),
    /// The MARK of the stack.
    Mark,
}

/// The globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state`.
    RebuildParameter,
    /// `torch.Size`.
    Size,
    /// A typed storage class.
    Storage(Option<ElementType>, &'static str),
}

fn global(module: &str, name: &str) -> Result<Global, String> {
    let storage = |class: &'static str, element| Ok(Global::Storage(element, class));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Ok(Global::RebuildParameter)
        }
        ("torch", "Size") => Ok(Global::Size),
        ("torch", "FloatStorage") => storage("FloatStorage", Some(ElementType::F32)),
        ("torch", "DoubleStorage") => storage("DoubleStorage", Some(ElementType::F64)),
        ("torch", "HalfStorage") => storage("HalfStorage", Some(ElementType::F16)),
        ("torch", "BFloat16Storage") => storage("BFloat16Storage", Some(ElementType::BF16)),
        ("torch", "LongStorage") => storage("LongStorage", None),
        ("torch", "IntStorage") => storage("IntStorage", None),
        ("torch", "ShortStorage") => storage("ShortStorage", None),
        ("torch", "CharStorage") => storage("CharStorage", None),
        ("torch", "ByteStorage") => storage("ByteStorage", None),
        ("torch", "BoolStorage") => storage("BoolStorage", None),
        _ => Err(format!(
            "the pickle names the global `{module}.{name}`, which is not on the allow-list \
             (tensors, storages, OrderedDict, torch.Size); nothing is executed — re-save the \
             tensors alone (e.g. a state_dict) to read them"
        )),
    }
}

/// Reads a pickle into its value, executing nothing.
pub fn read(bytes: &[u8]) -> Result<Value, String> {
    Machine {
        bytes,
        at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.bytes.len() - self.at {
            return Err(format!(
                "pickle truncated: {n} bytes wanted at offset {}, {} left",
                self.at,
                self.bytes.len() - self.at
            ));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated inside a text line")?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| "a pickle text line is not UTF-8")?
            .to_string();
        self.at += end + 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a pickle string is not UTF-8".into())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle has no MARK to pop to")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn memoize(&mut self, key: u32) -> Result<(), String> {
        let v = self
            .stack
            .last()
            .ok_or("pickle memoizes an empty stack")?
            .clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn get(&mut self, key: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("pickle reads memo {key}, which was never set"))?
            .clone();
        self.stack.push(v);
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        for _ in 0..MAX_OPS {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} (0–5 are read)"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
                    self.stack.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("pickle integer of {n} bytes (at most 8 are read)"));
                    }
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    buf[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                    self.stack.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s))
                }
                0x8d => {
                    let n = self.u64()?;
                    let n = usize::try_from(n).map_err(|_| "pickle string too long")?;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s))
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b']' => self.stack.push(Value::List(Rc::new(Vec::new()))),
                b'}' => self.stack.push(Value::Dict(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(items)))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, Value::Mark)) {
                        return Err("pickle tuple holds a MARK".into());
                    }
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memoize(k.into())?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memoize(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memoize(k)?
                }
                b'h' => {
                    let k = self.u8()?;
                    self.get(k.into())?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(global(&module, &name)?))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(global(&m, &n)?))
                        }
                        _ => return Err("pickle STACK_GLOBAL of non-strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err("pickle REDUCE with arguments that are not a tuple".into());
                    };
                    let Value::Global(g) = callable else {
                        return Err("pickle REDUCE calls something that is not a global".into());
                    };
                    self.stack.push(call(g, &args)?)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only OrderedDict is allowed.
                    let _args = self.pop()?;
                    match self.pop()? {
                        Value::Global(Global::OrderedDict) => {
                            self.stack.push(Value::Dict(Rc::new(Vec::new())))
                        }
                        _ => return Err("pickle NEWOBJ of a class not on the allow-list".into()),
                    }
                }
                b'b' => {
                    // BUILD: state set on an object. OrderedDict's `_metadata` and a tensor's
                    // empty state are ignored; anything else is refused.
                    let state = self.pop()?;
                    match (self.top()?, &state) {
                        (Value::Dict(_) | Value::Tensor(_), Value::Dict(_) | Value::None) => {}
                        (Value::Tensor(_), Value::Tuple(_)) => {}
                        _ => return Err("pickle BUILD on an object that is not a dict".into()),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => Rc::make_mut(d).push((k, v)),
                        _ => return Err("pickle SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("pickle SETITEMS with an odd number of items".into());
                    }
                    match self.top()? {
                        Value::Dict(d) => {
                            let d = Rc::make_mut(d);
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        _ => return Err("pickle SETITEMS on a non-dict".into()),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => Rc::make_mut(l).push(v),
                        _ => return Err("pickle APPEND on a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => Rc::make_mut(l).extend(items),
                        _ => return Err("pickle APPENDS on a non-list".into()),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at offset {} is not read (only the opcodes \
                         of tensors, containers and primitives are)",
                        self.at - 1
                    ))
                }
            }
        }
        Err(format!("pickle runs past {MAX_OPS} opcodes"))
    }
}

fn int(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        _ => Err(format!("{what} is not a non-negative integer")),
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    match v {
        Value::Tuple(t) | Value::List(t) => t.iter().map(|x| int(x, what)).collect(),
        _ => Err(format!("{what} is not a tuple of integers")),
    }
}

/// A persistent id: `('storage', class, key, location, numel)`.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.as_slice() {
        [Value::Str(kind), Value::Global(Global::Storage(element, class)), key, _location, numel]
            if kind == "storage" =>
        {
            let key = match key {
                Value::Str(k) => k.clone(),
                Value::Int(i) => i.to_string(),
                _ => return Err("storage key is not a string".into()),
            };
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("storage key `{key}` is not a plain name"));
            }
            Ok(Value::Storage(Rc::new(StorageRef {
                element: *element,
                class: class.to_string(),
                key,
                numel: int(numel, "storage size")?,
            })))
        }
        _ => Err("persistent id is not ('storage', <storage class>, key, location, numel)".into()),
    }
}

/// Calls an allowed global.
fn call(g: Global, args: &[Value]) -> Result<Value, String> {
    match g {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Rc::new(Vec::new()))),
        Global::Size => match args {
            [t @ Value::Tuple(_)] => Ok(t.clone()),
            _ => Err("torch.Size takes one tuple".into()),
        },
        Global::RebuildTensor => match args {
            [Value::Storage(s), offset, size, stride, ..] if args.len() <= 7 => {
                let t = TensorRef {
                    storage: (**s).clone(),
                    offset: int(offset, "tensor storage offset")?,
                    size: ints(size, "tensor size")?,
                    stride: ints(stride, "tensor stride")?,
                };
                if t.size.len() != t.stride.len() {
                    return Err("tensor size and stride differ in length".into());
                }
                Ok(Value::Tensor(Rc::new(t)))
            }
            _ => Err("_rebuild_tensor_v2 takes (storage, offset, size, stride, …)".into()),
        },
        Global::RebuildParameter => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err("_rebuild_parameter takes a tensor".into()),
        },
        Global::OrderedDict => Err("OrderedDict called with arguments".into()),
        Global::Storage(_, class) => Err(format!("the storage class {class} is called")),
    }
}
