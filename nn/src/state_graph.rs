//! `StateGraph`: the module tree as a petgraph graph. Nodes are modules, parameters and
//! buffers; an edge from a module to its state carries the attribute name. A handle
//! reachable from several modules (a tied weight) is one node with several parents, named
//! by the first path that reached it. Everything the `Module` trait lists, saves, loads or
//! moves is read from this one walk.
//!
//! Order follows PyTorch: each module's parameters, then its buffers, then its children
//! (depth first), so `state_dict` keys come out in the order PyTorch writes them.
use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use stategrad_autograd::{Result, Tensor};

use crate::module::{Module, Training, Visitor};
use crate::state_dict::StateDict;
use crate::{Buffer, Param};

/// A node of the [`StateGraph`].
#[derive(Clone, Debug)]
pub enum StateNode {
    /// A module, by dotted path (`""` for the root) and type name.
    Module {
        /// Dotted path.
        path: String,
        /// Type name (`Linear`, `BatchNorm2d`, ...).
        type_name: &'static str,
    },
    /// A parameter, by its first dotted name.
    Param {
        /// First dotted name.
        path: String,
        /// The shared handle.
        param: Param,
    },
    /// A buffer, by its first dotted name.
    Buffer {
        /// First dotted name.
        path: String,
        /// The shared handle.
        buffer: Buffer,
    },
}

impl StateNode {
    /// The node's (first) dotted path.
    pub fn path(&self) -> &str {
        match self {
            StateNode::Module { path, .. } | StateNode::Param { path, .. } | StateNode::Buffer { path, .. } => path,
        }
    }

    /// `module`, `param`, `buffer` or `buffer (non-persistent)`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateNode::Module { .. } => "module",
            StateNode::Param { .. } => "param",
            StateNode::Buffer { buffer, .. } if buffer.is_persistent() => "buffer",
            StateNode::Buffer { .. } => "buffer (non-persistent)",
        }
    }
}

/// The state of a module tree as a directed graph (module -> attribute).
#[derive(Clone, Debug)]
pub struct StateGraph {
    graph: DiGraph<StateNode, String>,
    /// Every name a parameter or buffer is reachable under, in walk order (aliases too).
    names: Vec<(String, NodeIndex)>,
    training: Vec<Training>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

struct Builder {
    graph: DiGraph<StateNode, String>,
    seen: HashMap<(u8, usize), NodeIndex>,
    names: Vec<(String, NodeIndex)>,
    training: Vec<Training>,
    seen_flags: HashMap<usize, ()>,
}

impl Builder {
    fn walk(&mut self, node: NodeIndex, prefix: &str, visit: &dyn Fn(&mut dyn Visitor)) {
        // Pass 1: this module's own state (parameters before buffers, as PyTorch orders them).
        let mut own = Own::default();
        visit(&mut own);
        for flag in own.flags {
            if self.seen_flags.insert(flag.key(), ()).is_none() {
                self.training.push(flag);
            }
        }
        for (name, p) in own.params {
            let path = join(prefix, &name);
            let key = (0, p.key());
            self.attach(node, name, path, key, |path| StateNode::Param { path, param: p.clone() });
        }
        for (name, b) in own.buffers {
            let path = join(prefix, &name);
            let key = (1, b.key());
            self.attach(node, name, path, key, |path| StateNode::Buffer { path, buffer: b.clone() });
        }
        // Pass 2: children, depth first.
        visit(&mut Children { builder: self, parent: node, prefix });
    }

    fn attach(
        &mut self,
        parent: NodeIndex,
        name: String,
        path: String,
        key: (u8, usize),
        make: impl FnOnce(String) -> StateNode,
    ) {
        let idx = match self.seen.get(&key) {
            Some(&idx) => idx,
            None => {
                let idx = self.graph.add_node(make(path.clone()));
                self.seen.insert(key, idx);
                idx
            }
        };
        self.names.push((path, idx));
        self.graph.add_edge(parent, idx, name);
    }
}

#[derive(Default)]
struct Own {
    params: Vec<(String, Param)>,
    buffers: Vec<(String, Buffer)>,
    flags: Vec<Training>,
}

impl Visitor for Own {
    fn param(&mut self, name: &str, param: &Param) {
        self.params.push((name.to_string(), param.clone()));
    }
    fn buffer(&mut self, name: &str, buffer: &Buffer) {
        self.buffers.push((name.to_string(), buffer.clone()));
    }
    fn module(&mut self, _name: &str, _module: &dyn Module) {}
    fn training(&mut self, flag: &Training) {
        self.flags.push(flag.clone());
    }
}

struct Children<'a> {
    builder: &'a mut Builder,
    parent: NodeIndex,
    prefix: &'a str,
}

impl Visitor for Children<'_> {
    fn param(&mut self, _name: &str, _param: &Param) {}
    fn buffer(&mut self, _name: &str, _buffer: &Buffer) {}
    fn module(&mut self, name: &str, module: &dyn Module) {
        let path = join(self.prefix, name);
        let child =
            self.builder.graph.add_node(StateNode::Module { path: path.clone(), type_name: module.type_name() });
        self.builder.graph.add_edge(self.parent, child, name.to_string());
        self.builder.walk(child, &path, &|v| module.visit(v));
    }
}

impl StateGraph {
    /// Walks a module (given by its `visit`) into a graph.
    pub fn build(type_name: &'static str, visit: &dyn Fn(&mut dyn Visitor)) -> StateGraph {
        let mut b = Builder {
            graph: DiGraph::new(),
            seen: HashMap::new(),
            names: Vec::new(),
            training: Vec::new(),
            seen_flags: HashMap::new(),
        };
        let root = b.graph.add_node(StateNode::Module { path: String::new(), type_name });
        b.walk(root, "", visit);
        StateGraph { graph: b.graph, names: b.names, training: b.training }
    }

    /// The petgraph graph (node 0 is the root module).
    pub fn graph(&self) -> &DiGraph<StateNode, String> {
        &self.graph
    }

    /// Every distinct parameter under its first name, in order.
    pub fn named_parameters(&self) -> Vec<(String, Param)> {
        self.graph
            .node_weights()
            .filter_map(|n| match n {
                StateNode::Param { path, param } => Some((path.clone(), param.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every distinct buffer under its first name, in order.
    pub fn named_buffers(&self) -> Vec<(String, Buffer)> {
        self.graph
            .node_weights()
            .filter_map(|n| match n {
                StateNode::Buffer { path, buffer } => Some((path.clone(), buffer.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every module's path and type name, root first.
    pub fn named_modules(&self) -> Vec<(String, &'static str)> {
        self.graph
            .node_weights()
            .filter_map(|n| match n {
                StateNode::Module { path, type_name } => Some((path.clone(), *type_name)),
                _ => None,
            })
            .collect()
    }

    /// The nodes saved in a `state_dict` (parameters and persistent buffers), in order,
    /// with the tensor each holds.
    pub(crate) fn saved(&self) -> impl Iterator<Item = (NodeIndex, &StateNode)> {
        self.graph.node_indices().map(|i| (i, &self.graph[i])).filter(|(_, n)| match n {
            StateNode::Param { .. } => true,
            StateNode::Buffer { buffer, .. } => buffer.is_persistent(),
            StateNode::Module { .. } => false,
        })
    }

    /// Every name (first names and aliases) under which a node is reachable.
    pub(crate) fn names(&self) -> &[(String, NodeIndex)] {
        &self.names
    }

    /// Tied weights: every further name of a saved parameter or buffer, with its first
    /// name (the key a `state_dict` holds it under), in walk order.
    pub fn ties(&self) -> Vec<(String, String)> {
        let saved: HashMap<NodeIndex, &str> = self.saved().map(|(i, n)| (i, n.path())).collect();
        self.names
            .iter()
            .filter_map(|(name, idx)| {
                saved.get(idx).filter(|first| **first != name).map(|f| (name.clone(), f.to_string()))
            })
            .collect()
    }

    /// Parameters and persistent buffers by first name.
    pub fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for (_, node) in self.saved() {
            let t = match node {
                StateNode::Param { param, .. } => param.data(),
                StateNode::Buffer { buffer, .. } => buffer.tensor(),
                StateNode::Module { .. } => continue,
            };
            sd.insert(node.path(), t);
        }
        sd
    }

    /// The train/eval flags in the tree, each once.
    pub fn training_flags(&self) -> &[Training] {
        &self.training
    }

    /// Replaces every parameter's and buffer's data by `f(data)`: all results are computed
    /// first, then assigned, so a failure changes nothing. Each handle is mapped once.
    pub(crate) fn map_state(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
        let mut staged = Vec::new();
        for node in self.graph.node_weights() {
            match node {
                StateNode::Param { param, .. } => staged.push((node, f(&param.data())?)),
                StateNode::Buffer { buffer, .. } => staged.push((node, f(&buffer.tensor())?)),
                StateNode::Module { .. } => {}
            }
        }
        for (node, t) in staged {
            match node {
                StateNode::Param { param, .. } => param.put(t),
                StateNode::Buffer { buffer, .. } => buffer.put(t),
                StateNode::Module { .. } => {}
            }
        }
        Ok(())
    }

    /// Every edge as `(parent path, attribute, child path, child kind)`, in insertion order:
    /// two graphs with equal edge lists describe the same state.
    pub fn edges(&self) -> Vec<(String, String, String, &'static str)> {
        self.graph
            .edge_references()
            .map(|e| {
                let child = &self.graph[e.target()];
                (self.graph[e.source()].path().to_string(), e.weight().clone(), child.path().to_string(), child.kind())
            })
            .collect()
    }

    /// Graphviz DOT: modules as boxes, parameters as filled ellipses, persistent buffers as
    /// ellipses, non-persistent buffers as dashed ellipses; edges labelled by attribute.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph state {\n  rankdir=LR;\n");
        for i in self.graph.node_indices() {
            let node = &self.graph[i];
            let (label, style) = match node {
                StateNode::Module { path, type_name } => {
                    let name = if path.is_empty() { "(root)" } else { path };
                    (format!("{name}\\n{type_name}"), "shape=box, style=rounded")
                }
                StateNode::Param { path, param } => (
                    format!("{path}\\nparam {:?} {}", param.shape(), param.dtype()),
                    "shape=ellipse, style=filled, fillcolor=lightblue",
                ),
                StateNode::Buffer { path, buffer } => (
                    format!("{path}\\nbuffer {:?} {}", buffer.shape(), buffer.dtype()),
                    if buffer.is_persistent() { "shape=ellipse" } else { "shape=ellipse, style=dashed" },
                ),
            };
            let _ = writeln!(s, "  n{} [label=\"{}\", {}];", i.index(), label.replace('"', "\\\""), style);
        }
        for e in self.graph.edge_references() {
            let _ = writeln!(
                s,
                "  n{} -> n{} [label=\"{}\"];",
                e.source().index(),
                e.target().index(),
                e.weight().replace('"', "\\\"")
            );
        }
        s.push_str("}\n");
        s
    }
}
