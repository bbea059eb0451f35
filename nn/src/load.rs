//! Loading state into a module with [`LoadOptions`]: prefix renaming, tied aliases, module
//! migrations (`Module::upgrade_state`), user hooks, dtype casts, shape-mismatch policies,
//! materialisation of a model built in deferred mode, and recomputation of non-persistent
//! buffers. Every action taken is listed in the returned [`LoadReport`].
//!
//! Order: rename keys (strip, then add prefixes) -> resolve tied aliases (from the file's
//! ties metadata) -> run each module's migration -> run the pre-load hooks -> match keys
//! against the module (cast, shape policy) -> check (strict: any problem fails with
//! [`Error::Load`] and nothing changes; an unmaterialised tensor left without data fails
//! naming it, before anything changes) -> assign -> recompute non-persistent buffers of
//! materialised modules -> run the post-load hooks.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use stategrad_autograd::{Cast, DType, Device, Error, LoadReport, Mismatch, Renamed, Result, Tensor, UnmatchedKey};

use crate::checkpoint::{json_entry, Metadata, TIES_KEY, VERSIONS_KEY};
use crate::module::{Module, Visitor};
use crate::state_dict::{suggest, StateDict};
use crate::state_graph::{StateGraph, StateNode};
use crate::{Buffer, Param};

/// What to do with a key whose shape differs from the module's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShapeMismatch {
    /// A problem: listed in `shape_mismatches`, and a strict load fails (the default).
    #[default]
    Error,
    /// Not loaded: the module keeps its own tensor; listed in `skipped`, not a failure.
    Skip,
    /// Loaded as it is: the module's tensor takes the state dict's shape (a resized
    /// vocabulary, a new head); listed in `resized`.
    Keep,
}

/// A hook run on the incoming state before it is matched against the module.
pub type PreLoadHook = Arc<dyn Fn(&mut StateDict) -> Result<()> + Send + Sync>;
/// A hook run with the report after a successful load.
pub type PostLoadHook = Arc<dyn Fn(&LoadReport) -> Result<()> + Send + Sync>;
/// A hook run on the outgoing state before it is written.
pub type PreSaveHook = Arc<dyn Fn(&mut StateDict) -> Result<()> + Send + Sync>;
/// A hook run with the path after a successful save.
pub type PostSaveHook = Arc<dyn Fn(&Path) -> Result<()> + Send + Sync>;

/// How [`Module::load_state_dict_with`] and [`Module::load_safetensors_with`] load.
///
/// ```
/// use stategrad_nn::{LoadOptions, Linear, Module, ShapeMismatch};
/// let src = Linear::new(3, 2)?;
/// let mut sd = stategrad_nn::StateDict::new();
/// for (k, t) in src.state_dict().iter() {
///     sd.insert(format!("module.{k}"), t.to_dtype(stategrad_autograd::DType::F64)?);
/// }
/// let dst = Linear::new(3, 2)?;
/// let opts = LoadOptions::default().strip_prefix("module.").cast(true);
/// let report = dst.load_state_dict_with(&sd, &opts)?;
/// assert_eq!(report.renamed.len(), 2);
/// assert_eq!(report.cast.len(), 2);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Clone)]
pub struct LoadOptions {
    /// Fail (changing nothing) on any missing or unexpected key or mismatch (default true).
    pub strict: bool,
    /// Prefixes removed from the keys that start with them, in order (`module.` of
    /// DataParallel, `_orig_mod.` of `torch.compile`).
    pub strip_prefixes: Vec<String>,
    /// A prefix added to every key after stripping (a backbone file into `backbone.`).
    pub add_prefix: Option<String>,
    /// Convert float tensors to the module's float dtype (f16/bf16/f32/f64 either way)
    /// instead of reporting a dtype mismatch.
    pub cast: bool,
    /// What a shape mismatch does.
    pub on_shape_mismatch: ShapeMismatch,
    /// Where tensors of a model built in deferred mode are materialised (default CPU);
    /// tensors that already hold data stay on their device.
    pub device: Option<Device>,
    /// Memory-map safetensors files (default true; see the checkpoint module).
    pub mmap: bool,
    pre_hooks: Vec<PreLoadHook>,
    post_hooks: Vec<PostLoadHook>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: true,
            strip_prefixes: Vec::new(),
            add_prefix: None,
            cast: false,
            on_shape_mismatch: ShapeMismatch::Error,
            device: None,
            mmap: true,
            pre_hooks: Vec::new(),
            post_hooks: Vec::new(),
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("strict", &self.strict)
            .field("strip_prefixes", &self.strip_prefixes)
            .field("add_prefix", &self.add_prefix)
            .field("cast", &self.cast)
            .field("on_shape_mismatch", &self.on_shape_mismatch)
            .field("device", &self.device)
            .field("mmap", &self.mmap)
            .field("hooks", &(self.pre_hooks.len() + self.post_hooks.len()))
            .finish()
    }
}

impl LoadOptions {
    /// Strict or not.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Also strip `prefix` from keys that start with it.
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefixes.push(prefix.into());
        self
    }

    /// Add `prefix` to every key.
    pub fn add_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.add_prefix = Some(prefix.into());
        self
    }

    /// Allow float dtype casts.
    pub fn cast(mut self, cast: bool) -> Self {
        self.cast = cast;
        self
    }

    /// The shape-mismatch policy.
    pub fn on_shape_mismatch(mut self, policy: ShapeMismatch) -> Self {
        self.on_shape_mismatch = policy;
        self
    }

    /// Materialise deferred tensors on `device`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// Memory-map files or read them into memory.
    pub fn mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }

    /// Adds a hook run on the incoming state (after renaming and migrations, before matching).
    pub fn pre_hook(mut self, hook: impl Fn(&mut StateDict) -> Result<()> + Send + Sync + 'static) -> Self {
        self.pre_hooks.push(Arc::new(hook));
        self
    }

    /// Adds a hook run with the report after a successful load.
    pub fn post_hook(mut self, hook: impl Fn(&LoadReport) -> Result<()> + Send + Sync + 'static) -> Self {
        self.post_hooks.push(Arc::new(hook));
        self
    }

    /// `key` after stripping and adding prefixes.
    fn rename(&self, key: &str) -> String {
        let mut k = key;
        for p in &self.strip_prefixes {
            k = k.strip_prefix(p.as_str()).unwrap_or(k);
        }
        match &self.add_prefix {
            Some(p) => format!("{p}{k}"),
            None => k.to_string(),
        }
    }

    /// A module path (no trailing dot) renamed like the keys below it.
    fn rename_module(&self, path: &str) -> String {
        let dotted = if path.is_empty() { String::new() } else { format!("{path}.") };
        let renamed = self.rename(&dotted);
        renamed.strip_suffix('.').unwrap_or(&renamed).to_string()
    }
}

/// How [`Module::save_safetensors_with`] saves: extra metadata and hooks.
#[derive(Clone, Default)]
pub struct SaveOptions {
    /// Extra `__metadata__` entries.
    pub metadata: Metadata,
    pre_hooks: Vec<PreSaveHook>,
    post_hooks: Vec<PostSaveHook>,
}

impl fmt::Debug for SaveOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveOptions")
            .field("metadata", &self.metadata)
            .field("hooks", &(self.pre_hooks.len() + self.post_hooks.len()))
            .finish()
    }
}

impl SaveOptions {
    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds a hook run on the outgoing state dict before it is written.
    pub fn pre_hook(mut self, hook: impl Fn(&mut StateDict) -> Result<()> + Send + Sync + 'static) -> Self {
        self.pre_hooks.push(Arc::new(hook));
        self
    }

    /// Adds a hook run with the path after a successful save.
    pub fn post_hook(mut self, hook: impl Fn(&Path) -> Result<()> + Send + Sync + 'static) -> Self {
        self.post_hooks.push(Arc::new(hook));
        self
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Calls `f(path, module)` on `m` and every module below it, depth first; the first error
/// stops the walk.
pub(crate) fn each_module(
    m: &dyn Module,
    path: &str,
    f: &mut dyn FnMut(&str, &dyn Module) -> Result<()>,
) -> Result<()> {
    f(path, m)?;
    struct Kids<'a> {
        path: &'a str,
        f: &'a mut dyn FnMut(&str, &dyn Module) -> Result<()>,
        err: Option<Error>,
    }
    impl Visitor for Kids<'_> {
        fn param(&mut self, _: &str, _: &Param) {}
        fn buffer(&mut self, _: &str, _: &Buffer) {}
        fn module(&mut self, name: &str, module: &dyn Module) {
            if self.err.is_none() {
                if let Err(e) = each_module(module, &join(self.path, name), self.f) {
                    self.err = Some(e);
                }
            }
        }
    }
    let mut kids = Kids { path, f, err: None };
    m.visit(&mut kids);
    kids.err.map_or(Ok(()), Err)
}

/// A module's own buffers (not its children's), by attribute name.
fn own_buffers(m: &dyn Module) -> Vec<(String, Buffer)> {
    struct Own(Vec<(String, Buffer)>);
    impl Visitor for Own {
        fn param(&mut self, _: &str, _: &Param) {}
        fn buffer(&mut self, name: &str, b: &Buffer) {
            self.0.push((name.to_string(), b.clone()));
        }
        fn module(&mut self, _: &str, _: &dyn Module) {}
    }
    let mut own = Own(Vec::new());
    m.visit(&mut own);
    own.0
}

/// The metadata a module's save records: state versions and tied aliases.
pub(crate) fn module_metadata(m: &dyn Module, graph: &StateGraph) -> Result<Metadata> {
    let mut versions = BTreeMap::new();
    each_module(m, "", &mut |path, m| {
        if m.state_version() != 1 {
            versions.insert(path.to_string(), m.state_version());
        }
        Ok(())
    })?;
    let ties: BTreeMap<String, String> = graph.ties().into_iter().collect();
    let mut meta = Metadata::new();
    meta.insert(VERSIONS_KEY.into(), serde_json::to_string(&versions).expect("maps serialize"));
    if !ties.is_empty() {
        meta.insert(TIES_KEY.into(), serde_json::to_string(&ties).expect("maps serialize"));
    }
    Ok(meta)
}

/// Saves a module: its state dict (pre-save hooks applied), versions, ties and metadata.
pub(crate) fn save_module(m: &dyn Module, path: &Path, opts: &SaveOptions) -> Result<()> {
    let graph = m.state_graph();
    let mut sd = graph.state_dict();
    for h in &opts.pre_hooks {
        h(&mut sd)?;
    }
    let mut meta = module_metadata(m, &graph)?;
    meta.extend(opts.metadata.clone());
    crate::checkpoint::save_safetensors_with_metadata(&sd, &meta, path)?;
    for h in &opts.post_hooks {
        h(path)?;
    }
    Ok(())
}

/// Loads `sd` (with the file's `meta`) into `root` following `opts`; see the module docs.
pub(crate) fn load_module(
    root: &dyn Module,
    sd: &StateDict,
    meta: &Metadata,
    opts: &LoadOptions,
    op: &'static str,
) -> Result<LoadReport> {
    let bad_meta = |msg: String| Error::State { op, msg };
    let mut report = LoadReport::default();
    let graph = root.state_graph();

    // 1. Prefixes.
    let mut state = StateDict::new();
    for (k, t) in sd.iter() {
        let to = opts.rename(k);
        if state.contains_key(&to) {
            return Err(Error::argument(op, format!("two keys become {to:?} after renaming (one is {k:?})")));
        }
        if to != k {
            report.renamed.push(Renamed { from: k.to_string(), to: to.clone() });
        }
        state.insert(to, t.clone());
    }

    // 2. Tied aliases recorded by the file: each alias the module knows reads its key's tensor.
    let names: HashMap<&str, _> = graph.names().iter().map(|(n, i)| (n.as_str(), *i)).collect();
    if let Some(ties) = json_entry::<BTreeMap<String, String>>(meta, TIES_KEY).map_err(bad_meta)? {
        for (alias, key) in ties {
            let (alias, key) = (opts.rename(&alias), opts.rename(&key));
            if names.contains_key(alias.as_str()) && !state.contains_key(&alias) {
                if let Some(t) = state.get(&key).cloned() {
                    report.renamed.push(Renamed { from: key, to: alias.clone() });
                    state.insert(alias, t);
                }
            }
        }
    }

    // 3. Migrations, each module at its prefix, told the version its state was saved at.
    let versions = json_entry::<BTreeMap<String, u32>>(meta, VERSIONS_KEY).map_err(bad_meta)?;
    let versions: Option<HashMap<String, u32>> =
        versions.map(|v| v.into_iter().map(|(p, n)| (opts.rename_module(&p), n)).collect());
    each_module(root, "", &mut |path, m| {
        let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
        let from = versions.as_ref().map(|v| v.get(path).copied().unwrap_or(1));
        report.migrated.extend(m.upgrade_state(&prefix, &mut state, from)?);
        Ok(())
    })?;

    // 4. User hooks.
    for h in &opts.pre_hooks {
        h(&mut state)?;
    }

    // 5. Match.
    let staged = match_state(&graph, &state, opts, &mut report)?;

    // 6. Check, then assign.
    if opts.strict && !report.is_clean() {
        report.loaded.clear(); // nothing was
        return Err(Error::Load { op, report: Box::new(report) });
    }
    let staged_keys: Vec<usize> = staged.iter().map(|(n, _)| node_key(n)).collect();
    let unmaterialised: Vec<&str> = graph
        .saved()
        .filter(|(_, n)| node_tensor(n).is_some_and(|t| t.device() == Device::Meta))
        .filter(|(_, n)| !staged_keys.contains(&node_key(n)))
        .map(|(_, n)| n.path())
        .collect();
    if !unmaterialised.is_empty() {
        return Err(Error::State {
            op,
            msg: format!("unmaterialised tensors (built in deferred mode) not in the state: {unmaterialised:?}"),
        });
    }
    for (node, t) in staged {
        match node {
            StateNode::Param { param, .. } => param.put(t),
            StateNode::Buffer { buffer, .. } => buffer.put(t),
            StateNode::Module { .. } => {}
        }
    }

    // 7. Non-persistent buffers of deferred modules: their module recomputes them.
    let device = opts.device.unwrap_or(Device::Cpu);
    each_module(root, "", &mut |path, m| {
        let pending: Vec<(String, Buffer)> =
            own_buffers(m).into_iter().filter(|(_, b)| !b.is_persistent() && b.device() == Device::Meta).collect();
        if pending.is_empty() {
            return Ok(());
        }
        m.reset_non_persistent_buffers(device)?;
        for (name, b) in pending {
            let key = join(path, &name);
            if b.device() == Device::Meta {
                return Err(Error::State {
                    op,
                    msg: format!(
                        "non-persistent buffer {key:?} is unmaterialised: no checkpoint holds it and {} does not \
                         recompute it (implement Module::reset_non_persistent_buffers)",
                        m.type_name()
                    ),
                });
            }
            report.recomputed.push(key);
        }
        Ok(())
    })?;

    for h in &opts.post_hooks {
        h(&report)?;
    }
    Ok(report)
}

fn node_tensor(n: &StateNode) -> Option<Tensor> {
    match n {
        StateNode::Param { param, .. } => Some(param.data()),
        StateNode::Buffer { buffer, .. } => Some(buffer.tensor()),
        StateNode::Module { .. } => None,
    }
}

fn node_key(n: &StateNode) -> usize {
    match n {
        StateNode::Param { param, .. } => param.key(),
        StateNode::Buffer { buffer, .. } => buffer.key(),
        StateNode::Module { .. } => 0,
    }
}

/// Matches `state` against the graph's saved nodes: the tensors to assign (cast and moved),
/// with every problem and action in `report`.
fn match_state<'g>(
    graph: &'g StateGraph,
    state: &StateDict,
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> Result<Vec<(&'g StateNode, Tensor)>> {
    let mut staged = Vec::new();
    let saved: Vec<_> = graph.saved().collect();
    // A tied handle may be found under any of its names; its first name is preferred.
    let mut aliases: HashMap<_, Vec<&str>> = HashMap::new();
    for (name, idx) in graph.names() {
        aliases.entry(*idx).or_default().push(name.as_str());
    }
    let known: HashMap<&str, ()> =
        saved.iter().flat_map(|(idx, _)| aliases.get(idx).into_iter().flatten().map(|n| (*n, ()))).collect();
    for (idx, node) in &saved {
        let names = aliases.get(idx).map(Vec::as_slice).unwrap_or(&[]);
        let Some((key, t)) = names.iter().find_map(|n| state.get(n).map(|t| (*n, t))) else {
            report.missing.push(UnmatchedKey { key: node.path().to_string(), suggestion: None });
            continue;
        };
        let Some(current) = node_tensor(node) else { continue };
        let mismatch = || Mismatch {
            key: key.to_string(),
            expected_shape: current.shape().to_vec(),
            found_shape: t.shape().to_vec(),
            expected_dtype: current.dtype(),
            found_dtype: t.dtype(),
        };
        let mut t = t.clone();
        if t.shape() != current.shape() {
            match opts.on_shape_mismatch {
                ShapeMismatch::Error => {
                    report.shape_mismatches.push(mismatch());
                    continue;
                }
                ShapeMismatch::Skip => {
                    report.skipped.push(mismatch());
                    continue;
                }
                ShapeMismatch::Keep => report.resized.push(mismatch()),
            }
        }
        if t.dtype() != current.dtype() {
            if !(opts.cast && castable(t.dtype(), current.dtype())) {
                report.dtype_mismatches.push(mismatch());
                continue;
            }
            report.cast.push(Cast { key: key.to_string(), from: t.dtype(), to: current.dtype() });
            t = t.to_dtype(current.dtype())?;
        }
        let device = match current.device() {
            Device::Meta => opts.device.unwrap_or(Device::Cpu),
            d => d,
        };
        staged.push((*node, t.to_device(device)?));
        report.loaded.push(node.path().to_string());
    }
    for k in state.keys().filter(|k| !known.contains_key(k)) {
        let suggestion = suggest(k, report.missing.iter().map(|m| m.key.as_str()).chain(known.keys().copied()));
        report.unexpected.push(UnmatchedKey { key: k.to_string(), suggestion });
    }
    let unexpected: Vec<String> = report.unexpected.iter().map(|u| u.key.clone()).collect();
    for m in &mut report.missing {
        m.suggestion = suggest(&m.key, unexpected.iter().map(String::as_str));
    }
    Ok(staged)
}

/// Casts a load may make: between float dtypes (integers never change type silently).
fn castable(from: DType, to: DType) -> bool {
    from.is_float() && to.is_float()
}
