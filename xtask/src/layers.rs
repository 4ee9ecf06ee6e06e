//! `cargo xtask layers`: the workspace's module layering and import cycles.
//!
//! # The idea
//!
//! A crate's modules form a graph: module `a` depends on module `b` when code
//! in `a` names something in `b` — `use crate::b::Thing;`, or a path in code
//! such as `crate::b::thing()`. Two properties keep that graph readable:
//!
//! * **No cycles.** If `a` uses `b` and `b` uses `a` (directly or through
//!   other modules), neither can be read, tested or moved without the other.
//!   Every crate of the workspace is checked.
//! * **Layers.** Some crates assign each top-level module a *layer* and say
//!   which layers it may use: pure decisions at the bottom, I/O above them,
//!   the daemon that wires everything at the top. A `use` that reaches upward
//!   breaks the rule. `strata-ctl` has such a table ([`STRATA_CTL_LAYERS`]).
//!
//! The graph's nodes are module paths (`os::netlink`, `daemon`); an edge is
//! the pair of modules as written: a `use crate::net::Interface` in
//! `os/netlink.rs` is the edge `os::netlink -> net`, whatever `Interface`
//! really is. A path's target is its longest prefix that is a module.
//!
//! Cycles are looked for on two levels. Between top-level modules, every edge
//! counts as one between their top-level modules, so `config -> link -> os ->
//! net -> config` is a cycle even if its uses sit in different submodules.
//! Inside one top-level module, edges count between the modules as written,
//! a module's own parent and children included (`os -> os::netlink -> os`).
//! Together they miss no cycle of the full graph: one that crosses top-level
//! modules is a cycle between them. Each strongly connected set of modules
//! is reported once, as its shortest cycle through its first module, with
//! the other modules of the set named.
//!
//! The crate root (`lib.rs`, `main.rs`) is the crate's facade — it declares
//! and re-exports everything — so it is no node of the cycle graph and may use
//! anything; a layered module that reaches into the root (`crate::Thing`
//! defined or re-exported there) breaks its layer, since that hides which
//! layer it uses. Each file under `src/bin/` is a crate of its own (its
//! `crate::` is itself) and may use anything. Test code may reach anywhere:
//! `#[cfg(test)]` items (the `mod tests { … }` at the end of a file) are
//! skipped.
//!
//! # How the sources are read
//!
//! The check lexes each file by hand rather than parsing it with `syn`:
//! comments (`//`, `///`, `//!`, nested `/* */`) and string, char and raw
//! string literals are dropped, and what remains is a flat list of tokens with
//! line numbers. On those tokens it finds `use` trees (grouped, nested,
//! multi-line, `pub use`, `self`, `super`, globs) and paths in code that start
//! with `crate`, `$crate`, `self`, `super` or a child module's name. `syn`
//! would parse whole items but sees macro bodies (`format!`, `tokio::select!`,
//! `matches!`) as opaque tokens, so they would need a token scan anyway, and
//! it reports line numbers outside a proc macro only with proc-macro2's
//! `span-locations` feature, which would change that crate's features for the
//! whole workspace. The lexer is about 150 lines and needs no dependency.
//!
//! # API
//!
//! [`read_sources`] is the only function that reads the file system: it
//! reads a crate's `src/` into a [`Sources`] map. The rest is pure:
//! [`targets`] turns that map into one [`Target`] (module set and edges) per
//! crate target and [`check`] finds the cycles and layer violations of a
//! target. [`check_workspace`] does both for each of [`WORKSPACE_CRATES`],
//! [`render`] makes the report text and [`run`] is `cargo xtask layers`.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    path::Path,
};

use anyhow::Context as _;

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// What a layer may use, besides itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MayUse {
    /// These top-level modules only (an empty list: nothing else in the crate).
    Only(&'static [&'static str]),
    /// Any module of the crate.
    Anything,
}

/// One top-level module and the layers it may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer {
    /// The top-level module (`control` for `src/control/` or `src/control.rs`).
    pub(crate) module: &'static str,
    /// What it may use.
    pub(crate) may_use: MayUse,
}

/// The layers of `strata-ctl`, bottom to top.
///
/// `control` holds the pure decisions (estimation, scoring, scheduling): no
/// I/O, no clock, nothing else of the crate, so every decision is tested on
/// plain values.
///
/// `auth` is the session handshake (Noise, keys, key ring): pure state
/// machines on bytes and time, using nothing of the crate.
///
/// `config` is the typed configuration and its validation; it speaks the
/// vocabulary of `control` (and `auth`'s key type) and nothing above it.
///
/// `dataplane` loads the eBPF programs and reads and writes their maps (aya);
/// it turns configuration and decisions into map entries.
///
/// `os` is what the operating system tells and does: netlink, sysfs, uevents,
/// ModemManager; it reports facts in `control`'s and `config`'s terms.
///
/// `inband` is the in-band probing of the links over the tunnel itself.
///
/// `serve` exposes the state (metrics, status) from the I/O layers beneath it.
///
/// `daemon` wires everything together and owns the tasks and their lifetime.
///
/// `testbed` holds the helpers of the golden BPF tests: the data plane with a
/// configuration, nothing of the OS or the daemon.
///
/// `lib.rs`, `main.rs` and `src/bin/*` may use anything.
pub(crate) const STRATA_CTL_LAYERS: &[Layer] = &[
    Layer { module: "control", may_use: MayUse::Only(&[]) },
    Layer { module: "auth", may_use: MayUse::Only(&[]) },
    Layer { module: "config", may_use: MayUse::Only(&["control", "auth"]) },
    Layer { module: "dataplane", may_use: MayUse::Only(&["config", "control"]) },
    Layer { module: "os", may_use: MayUse::Only(&["config", "control"]) },
    Layer { module: "inband", may_use: MayUse::Only(&["config", "control"]) },
    Layer { module: "serve", may_use: MayUse::Only(&["config", "control", "dataplane", "os", "inband"]) },
    Layer { module: "daemon", may_use: MayUse::Anything },
    Layer { module: "testbed", may_use: MayUse::Only(&["dataplane", "config", "control"]) },
];

/// Every crate of the workspace (its directory) and its layer table, if any.
/// Checked against `members` in the workspace's `Cargo.toml` by a test.
pub(crate) const WORKSPACE_CRATES: &[(&str, Option<&[Layer]>)] = &[
    ("strata-common", None),
    ("strata-ctl", Some(STRATA_CTL_LAYERS)),
    ("strata-ebpf", None),
    ("tests", None),
    ("xtask", None),
];

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// A token of Rust source, with comments and literals already gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// `::`
    PathSep,
    Punct(u8),
    /// A string, char, byte or number literal, or a lifetime.
    Lit,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    line: u32,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Splits `src` into tokens, dropping whitespace, comments and the contents
/// of literals.
fn lex(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut i = 0;
    // Advances to `to`, counting the newlines passed.
    let advance = |line: &mut u32, from: usize, to: usize| {
        let to = to.min(b.len());
        *line += u32::try_from(b[from..to].iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
        to
    };
    while i < b.len() {
        let c = b[i];
        let start_line = line;
        let mut push = |tok| out.push(Token { tok, line: start_line });
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                i = advance(&mut line, i, j);
            }
            b'"' => {
                let end = skip_string(b, i + 1);
                i = advance(&mut line, i, end);
                push(Tok::Lit);
            }
            b'\'' => {
                let end = skip_quote(b, i);
                i = advance(&mut line, i, end);
                push(Tok::Lit);
            }
            b'0'..=b'9' => {
                i += b[i..].iter().position(|&c| !is_ident_continue(c)).unwrap_or(b.len() - i);
                push(Tok::Lit);
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                i += 2;
                push(Tok::PathSep);
            }
            _ if is_ident_start(c) => {
                // Literal prefixes: b"…", c"…", b'…', r"…", r#"…"#, br"…", cr#"…"#; raw identifiers r#x.
                let mut j = i;
                if matches!(b[j], b'b' | b'c') {
                    j += 1;
                }
                if b.get(j) == Some(&b'r') {
                    let hashes = b[j + 1..].iter().take_while(|&&c| c == b'#').count();
                    if b.get(j + 1 + hashes) == Some(&b'"') {
                        let end = skip_raw_string(b, j + 2 + hashes, hashes);
                        i = advance(&mut line, i, end);
                        push(Tok::Lit);
                        continue;
                    }
                    if j == i && hashes == 1 && b.get(j + 2).is_some_and(|&c| is_ident_start(c)) {
                        let start = j + 2;
                        let end = start + b[start..].iter().take_while(|&&c| is_ident_continue(c)).count();
                        push(Tok::Ident(&src[start..end]));
                        i = end;
                        continue;
                    }
                }
                if j > i && b.get(j) == Some(&b'"') {
                    let end = skip_string(b, j + 1);
                    i = advance(&mut line, i, end);
                    push(Tok::Lit);
                    continue;
                }
                if b[i] == b'b' && b.get(i + 1) == Some(&b'\'') {
                    let end = skip_quote(b, i + 1);
                    i = advance(&mut line, i, end);
                    push(Tok::Lit);
                    continue;
                }
                let end = i + b[i..].iter().take_while(|&&c| is_ident_continue(c)).count();
                push(Tok::Ident(&src[i..end]));
                i = end;
            }
            _ => {
                i += 1;
                push(Tok::Punct(c));
            }
        }
    }
    out
}

/// The index just past the closing quote of a string whose body starts at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index just past a raw string's closing `"` and `hashes` hashes; its body starts at `i`.
fn skip_raw_string(b: &[u8], mut i: usize, hashes: usize) -> usize {
    while i < b.len() {
        if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
            return i + 1 + hashes;
        }
        i += 1;
    }
    b.len()
}

/// The index just past a char literal or a lifetime starting at the `'` at `i`.
fn skip_quote(b: &[u8], i: usize) -> usize {
    match b.get(i + 1) {
        Some(b'\\') => {
            // An escaped char: '\n', '\'', '\u{..}'.
            let mut j = i + 3;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            j + 1
        }
        Some(&c) => {
            let len = match c {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            if b.get(i + 1 + len) == Some(&b'\'') {
                i + 2 + len
            } else {
                // A lifetime or label: 'a, 'static.
                i + 1 + b[i + 1..].iter().take_while(|&&c| is_ident_continue(c)).count()
            }
        }
        None => b.len(),
    }
}

// ---------------------------------------------------------------------------
// One file: module declarations and references
// ---------------------------------------------------------------------------

/// A `mod name;` or `mod name { … }` in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModDecl {
    /// The inline modules it sits in, relative to the file's module.
    within: Vec<String>,
    name: String,
    inline: bool,
}

/// A path that may name a module of the crate: a `use` leaf or a path in code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The inline modules it sits in, relative to the file's module.
    within: Vec<String>,
    /// The path as written (`crate`, `super`, `self` or a name first).
    segments: Vec<String>,
    line: u32,
    /// `use crate::a::B` or `crate::a::f (path in code)`.
    text: String,
}

/// What one file declares and references.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileScan {
    mods: Vec<ModDecl>,
    refs: Vec<Reference>,
}

/// Finds the module declarations and references of one file, skipping
/// `#[cfg(test)]` items.
fn scan_file(src: &str) -> FileScan {
    let toks = lex(src);
    let mut scan = FileScan::default();
    let mut depth = 0usize;
    // Inline modules entered: name and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let within = |inline: &[(String, usize)]| inline.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let mut i = 0;
    while i < toks.len() {
        let prev = i.checked_sub(1).map(|p| toks[p].tok);
        match toks[i].tok {
            Tok::Punct(b'#') => {
                let inner = matches!(toks.get(i + 1).map(|t| t.tok), Some(Tok::Punct(b'!')));
                let open = i + 1 + usize::from(inner);
                if matches!(toks.get(open).map(|t| t.tok), Some(Tok::Punct(b'['))) {
                    let close = matching(&toks, open);
                    let test_only = is_cfg_test(&toks[open + 1..close.min(toks.len())]);
                    i = close + 1;
                    if test_only {
                        if inner {
                            // `#![cfg(test)]`: the rest of this module is test code.
                            if inline.is_empty() {
                                break;
                            }
                            i = skip_to_close(&toks, i);
                        } else {
                            i = skip_item(&toks, i);
                        }
                    }
                    continue;
                }
                i += 1;
            }
            Tok::Punct(b'{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct(b'}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|&(_, d)| d == depth + 1) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident("mod") => {
                if let Some(Tok::Ident(name)) = toks.get(i + 1).map(|t| t.tok) {
                    match toks.get(i + 2).map(|t| t.tok) {
                        Some(Tok::Punct(b';')) => {
                            scan.mods.push(ModDecl {
                                within: within(&inline),
                                name: name.into(),
                                inline: false,
                            });
                            i += 3;
                            continue;
                        }
                        Some(Tok::Punct(b'{')) => {
                            scan.mods.push(ModDecl {
                                within: within(&inline),
                                name: name.into(),
                                inline: true,
                            });
                            depth += 1;
                            inline.push((name.into(), depth));
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
            Tok::Ident("use") if !matches!(toks.get(i + 1).map(|t| t.tok), Some(Tok::Punct(b'<'))) => {
                let mut leaves = Vec::new();
                let mut j = i + 1;
                use_tree(&toks, &mut j, &[], &mut leaves);
                for (segments, line, glob) in leaves {
                    let text = format!("use {}{}", segments.join("::"), if glob { "::*" } else { "" });
                    scan.refs.push(Reference { within: within(&inline), segments, line, text });
                }
                // Past the `;` (or wherever the tree ended, if malformed).
                while j < toks.len() && toks[j].tok != Tok::Punct(b';') {
                    j += 1;
                }
                i = j + 1;
            }
            Tok::Ident(first)
                if matches!(toks.get(i + 1).map(|t| t.tok), Some(Tok::PathSep))
                    && !matches!(prev, Some(Tok::PathSep | Tok::Punct(b'.') | Tok::Ident("in")))
                    && (first == "crate" || !matches!(prev, Some(Tok::Punct(b'$')))) =>
            {
                let line = toks[i].line;
                let mut segments = vec![first.to_owned()];
                let mut j = i + 1;
                while let (Some(Tok::PathSep), Some(Tok::Ident(s))) =
                    (toks.get(j).map(|t| t.tok), toks.get(j + 1).map(|t| t.tok))
                {
                    segments.push(s.to_owned());
                    j += 2;
                }
                let dollar = if matches!(prev, Some(Tok::Punct(b'$'))) { "$" } else { "" };
                let text = format!("{dollar}{} (path in code)", segments.join("::"));
                scan.refs.push(Reference { within: within(&inline), segments, line, text });
                i = j;
            }
            _ => i += 1,
        }
    }
    scan
}

/// Parses a use tree at `*i` under `prefix`, appending its leaves (path,
/// line, glob) to `out`.
fn use_tree(toks: &[Token<'_>], i: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, u32, bool)>) {
    let mut path = prefix.to_vec();
    loop {
        let Some(t) = toks.get(*i) else { return };
        match t.tok {
            Tok::PathSep => {
                if path.is_empty() {
                    // `use ::name`: an external crate.
                    path.push(String::new());
                }
                *i += 1;
            }
            Tok::Ident(s) => {
                path.push(s.to_owned());
                *i += 1;
                if toks.get(*i).map(|t| t.tok) == Some(Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                if toks.get(*i).map(|t| t.tok) == Some(Tok::Ident("as")) {
                    *i += 2;
                }
                if path.len() > 1 && path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                out.push((path, t.line, false));
                return;
            }
            Tok::Punct(b'*') => {
                *i += 1;
                out.push((path, t.line, true));
                return;
            }
            Tok::Punct(b'{') => {
                *i += 1;
                while let Some(t) = toks.get(*i) {
                    match t.tok {
                        Tok::Punct(b'}') => {
                            *i += 1;
                            return;
                        }
                        Tok::Punct(b',') => *i += 1,
                        Tok::Punct(b';') => return,
                        _ => {
                            let before = *i;
                            use_tree(toks, i, &path, out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

/// The index of the bracket closing the one at `open`.
fn matching(toks: &[Token<'_>], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct(b'(' | b'[' | b'{') => depth += 1,
            Tok::Punct(b')' | b']' | b'}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Whether an attribute's tokens (inside `#[…]`) are `cfg(test)` or a `cfg`
/// that needs `test` (`cfg(all(test, …))`).
fn is_cfg_test(attr: &[Token<'_>]) -> bool {
    matches!(attr.first().map(|t| t.tok), Some(Tok::Ident("cfg")))
        && attr.iter().any(|t| t.tok == Tok::Ident("test"))
        && !attr.iter().any(|t| matches!(t.tok, Tok::Ident("not" | "any")))
}

/// The index just past the item starting at `i` (after its attributes).
fn skip_item(toks: &[Token<'_>], mut i: usize) -> usize {
    // Further attributes of the same item.
    while toks.get(i).map(|t| t.tok) == Some(Tok::Punct(b'#')) {
        i = matching(toks, i + 1) + 1;
    }
    // Items that end with `;` even after braces: `use a::{b};`, `const X: T = T {};`.
    let ends_with_semicolon = toks[i.min(toks.len())..]
        .iter()
        .map(|t| t.tok)
        .find(|t| {
            !matches!(t, Tok::Ident("pub") | Tok::Punct(b'(' | b')') | Tok::Ident("crate" | "super" | "in"))
        })
        .is_some_and(|t| matches!(t, Tok::Ident("use" | "const" | "static" | "type" | "let" | "extern")));
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        match t.tok {
            Tok::Punct(b'(' | b'[' | b'{') => depth += 1,
            Tok::Punct(b')' | b']' | b'}') => {
                if depth == 0 {
                    // The end of the enclosing block: the item was malformed.
                    return i;
                }
                depth -= 1;
                if depth == 0 && t.tok == Tok::Punct(b'}') && !ends_with_semicolon {
                    return i + 1;
                }
            }
            Tok::Punct(b';') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the `}` that closes the block `i` is in.
fn skip_to_close(toks: &[Token<'_>], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        match t.tok {
            Tok::Punct(b'{') => depth += 1,
            Tok::Punct(b'}') if depth == 0 => return i,
            Tok::Punct(b'}') => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------
// A crate target: modules and edges
// ---------------------------------------------------------------------------

/// A crate's `src/` files: path relative to `src/` (`os/mod.rs`) and text.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// How files are shown in messages: `strata-ctl/src/`.
    pub(crate) display_prefix: String,
    pub(crate) files: BTreeMap<String, String>,
}

/// A module path from the crate root; the root is the empty path.
type ModPath = Vec<String>;

fn show(module: &[String]) -> String {
    if module.is_empty() { "crate root".to_owned() } else { module.join("::") }
}

/// One reference from one module to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    from: ModPath,
    to: ModPath,
    /// `strata-ctl/src/os/follow.rs`
    file: String,
    line: u32,
    text: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.text)
    }
}

/// One crate target (the library, the main binary or a `src/bin/` binary):
/// its modules and the references between them.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `strata-ctl (lib)`
    pub(crate) label: String,
    /// Whether this is the library target (the one a layer table applies to).
    pub(crate) is_lib: bool,
    modules: BTreeSet<ModPath>,
    edges: Vec<Edge>,
    /// `mod x;` declarations whose file is missing.
    missing: Vec<String>,
}

/// The crate targets found in `sources`: `lib.rs`, `main.rs`, `bin/*.rs` and
/// `bin/*/main.rs`, each with the modules reachable from it.
pub(crate) fn targets(crate_name: &str, sources: &Sources) -> Vec<Target> {
    let mut roots: Vec<(String, String, bool)> = Vec::new();
    if sources.files.contains_key("lib.rs") {
        roots.push((format!("{crate_name} (lib)"), "lib.rs".into(), true));
    }
    if sources.files.contains_key("main.rs") {
        roots.push((format!("{crate_name} (main.rs)"), "main.rs".into(), false));
    }
    for file in sources.files.keys() {
        let Some(rest) = file.strip_prefix("bin/") else { continue };
        if matches!(rest.split_once('/'), None | Some((_, "main.rs"))) {
            roots.push((format!("{crate_name} (bin/{rest})"), file.clone(), false));
        }
    }
    roots.into_iter().map(|(label, root, is_lib)| target(label, &root, is_lib, sources)).collect()
}

fn target(label: String, root: &str, is_lib: bool, sources: &Sources) -> Target {
    let mut modules = BTreeSet::from([ModPath::new()]);
    let mut missing = Vec::new();
    // (file, its module, its references), in discovery order.
    let mut scanned: Vec<(String, ModPath, FileScan)> = Vec::new();
    // Files to read: path, module, directory of its `mod x;` files.
    let root_dir = root.rfind('/').map_or(String::new(), |p| root[..=p].to_owned());
    let mut queue = VecDeque::from([(root.to_owned(), ModPath::new(), root_dir)]);
    while let Some((file, module, dir)) = queue.pop_front() {
        let Some(text) = sources.files.get(&file) else { continue };
        let scan = scan_file(text);
        for decl in &scan.mods {
            let mut child = module.clone();
            child.extend(decl.within.iter().cloned());
            child.push(decl.name.clone());
            modules.insert(child.clone());
            if decl.inline {
                continue;
            }
            let sub: String = decl.within.iter().map(|w| format!("{w}/")).collect();
            let flat = format!("{dir}{sub}{}.rs", decl.name);
            let nested = format!("{dir}{sub}{}/mod.rs", decl.name);
            if sources.files.contains_key(&flat) {
                queue.push_back((flat, child, format!("{dir}{sub}{}/", decl.name)));
            } else if sources.files.contains_key(&nested) {
                queue.push_back((nested, child, format!("{dir}{sub}{}/", decl.name)));
            } else {
                missing.push(format!(
                    "{}{file}: `mod {}` has no file {flat} or {nested}",
                    sources.display_prefix, decl.name
                ));
            }
        }
        scanned.push((file, module, scan));
    }
    let mut edges = Vec::new();
    for (file, file_module, scan) in scanned {
        for r in scan.refs {
            let mut from = file_module.clone();
            from.extend(r.within.iter().cloned());
            let Some(path) = resolve(&from, &r.segments, &modules) else { continue };
            let to = (0..=path.len()).rev().map(|n| &path[..n]).find(|p| modules.contains(*p)).unwrap_or(&[]);
            if to != from.as_slice() {
                edges.push(Edge {
                    from,
                    to: to.to_vec(),
                    file: format!("{}{file}", sources.display_prefix),
                    line: r.line,
                    text: r.text,
                });
            }
        }
    }
    Target { label, is_lib, modules, edges, missing }
}

/// The absolute path a reference names, if it is in the crate: `crate::…`,
/// `self::…`, `super::…` or a child module's name first.
fn resolve(from: &[String], segments: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some(from.iter().chain(rest).cloned().collect()),
        "super" => {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            let base = from.get(..from.len().checked_sub(ups)?)?;
            Some(base.iter().chain(&segments[ups..]).cloned().collect())
        }
        _ => {
            let path: ModPath = from.iter().chain(segments).cloned().collect();
            modules.contains(&path[..=from.len()]).then_some(path)
        }
    }
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// Something wrong with a target.
#[derive(Debug, Clone)]
pub(crate) enum Finding {
    /// A cycle `modules[0] -> modules[1] -> … -> modules[0]`; `edges[i]` is
    /// the reference that makes the step from `modules[i]`.
    Cycle { modules: Vec<ModPath>, edges: Vec<Edge>, tangle: Vec<ModPath> },
    /// References from layer `from` to `to`, which `from` may not use.
    Layer { from: String, to: String, allowed: MayUse, edges: Vec<Edge> },
    /// A top-level module the layer table does not name.
    NoLayer { module: String },
    /// A `mod x;` whose file is missing.
    MissingFile { message: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cycle { modules, edges, tangle } => {
                let path: Vec<String> = modules.iter().chain(modules.first()).map(|m| show(m)).collect();
                writeln!(f, "cycle: {}", path.join(" -> "))?;
                for (k, e) in edges.iter().enumerate() {
                    let (from, to) = (&modules[k], &modules[(k + 1) % modules.len()]);
                    writeln!(f, "    {} -> {}: {e}", show(from), show(to))?;
                }
                if tangle.len() > modules.len() {
                    let all: Vec<String> = tangle.iter().map(|m| show(m)).collect();
                    writeln!(
                        f,
                        "    (one cycle of a tangle of {} modules: {})",
                        tangle.len(),
                        all.join(", ")
                    )?;
                }
                Ok(())
            }
            Self::Layer { from, to, allowed, edges } => {
                let allowed = match allowed {
                    MayUse::Only([]) => "nothing else in the crate".to_owned(),
                    MayUse::Only(list) => list.join(", "),
                    MayUse::Anything => "anything".to_owned(),
                };
                writeln!(f, "layer: {from} may not use {to} ({from} may use: {allowed})")?;
                for e in edges {
                    writeln!(f, "    {e}")?;
                }
                Ok(())
            }
            Self::NoLayer { module } => {
                writeln!(
                    f,
                    "layer: module {module} has no layer: add it to the rule table in xtask/src/layers.rs"
                )
            }
            Self::MissingFile { message } => writeln!(f, "module: {message}"),
        }
    }
}

/// The cycles of `target` and, if `layers` is given, its layer violations.
pub(crate) fn check(target: &Target, layers: Option<&[Layer]>) -> Vec<Finding> {
    let mut findings: Vec<Finding> =
        target.missing.iter().map(|m| Finding::MissingFile { message: m.clone() }).collect();
    findings.extend(cycles(target));
    if let Some(layers) = layers {
        findings.extend(layer_violations(target, layers));
    }
    findings
}

/// A graph of modules; each pair of modules keeps its first reference, the
/// one a message shows.
type Graph<'e> = BTreeMap<ModPath, BTreeMap<ModPath, &'e Edge>>;

/// The cycles of a target, on two levels. Between top-level modules, each
/// reference counts as one from its top-level module to the other's
/// (`config -> link -> os -> net -> config`, whichever submodules the uses
/// are in). Inside one top-level module, references count between the
/// modules as written (`os -> os::netlink -> os`). The crate root is left out.
fn cycles(target: &Target) -> Vec<Finding> {
    let mut top = Graph::new();
    let mut inner = Graph::new();
    for e in &target.edges {
        let (Some(from), Some(to)) = (e.from.first(), e.to.first()) else { continue };
        let (graph, from, to) = if from == to {
            (&mut inner, e.from.clone(), e.to.clone())
        } else {
            (&mut top, vec![from.clone()], vec![to.clone()])
        };
        graph.entry(from).or_default().entry(to).or_insert(e);
    }
    let mut findings = cycles_of(&top);
    findings.extend(cycles_of(&inner));
    findings
}

/// One cycle for each strongly connected set of modules of `graph`.
fn cycles_of(graph: &Graph<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for scc in strongly_connected(graph) {
        if scc.len() < 2 {
            continue;
        }
        // The shortest cycle through the set's first module, by breadth-first search.
        let start = scc[0];
        let members: BTreeSet<&ModPath> = scc.iter().copied().collect();
        let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        'search: while let Some(m) = queue.pop_front() {
            for next in graph.get(m).map(BTreeMap::keys).into_iter().flatten() {
                if !members.contains(next) || came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next, m);
                if next == start {
                    break 'search;
                }
                queue.push_back(next);
            }
        }
        let mut modules = vec![start];
        let mut at = came_from[start];
        while at != start {
            modules.push(at);
            at = came_from[at];
        }
        modules[1..].reverse();
        let edges =
            (0..modules.len()).map(|k| graph[modules[k]][modules[(k + 1) % modules.len()]].clone()).collect();
        findings.push(Finding::Cycle {
            modules: modules.into_iter().cloned().collect(),
            edges,
            tangle: scc.into_iter().cloned().collect(),
        });
    }
    findings
}

/// Tarjan's strongly connected components of `graph`, each sorted, in a
/// stable order.
fn strongly_connected<'g>(graph: &'g Graph<'_>) -> Vec<Vec<&'g ModPath>> {
    struct State<'g> {
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        out: Vec<Vec<&'g ModPath>>,
    }
    fn visit<'g>(v: &'g ModPath, graph: &'g Graph<'_>, s: &mut State<'g>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in graph.get(v).map(BTreeMap::keys).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// References that break the layer table, grouped by pair of layers, and
/// top-level modules that have no layer.
fn layer_violations(target: &Target, layers: &[Layer]) -> Vec<Finding> {
    let layer = |m: &str| layers.iter().find(|l| l.module == m);
    let mut findings = Vec::new();
    for top in target.modules.iter().filter(|m| m.len() == 1) {
        if layer(&top[0]).is_none() {
            findings.push(Finding::NoLayer { module: top[0].clone() });
        }
    }
    let mut broken: BTreeMap<(String, String), (MayUse, Vec<Edge>)> = BTreeMap::new();
    for e in &target.edges {
        let Some(from) = e.from.first() else { continue };
        let Some(rule) = layer(from) else { continue };
        let to = e.to.first().map_or_else(|| show(&[]), Clone::clone);
        let allowed = match rule.may_use {
            MayUse::Anything => true,
            MayUse::Only(list) => *from == to || list.contains(&to.as_str()),
        };
        // A module without a layer is reported once, above, not at each use.
        if !allowed && (e.to.is_empty() || layer(&to).is_some()) {
            broken.entry((from.clone(), to)).or_insert_with(|| (rule.may_use, Vec::new())).1.push(e.clone());
        }
    }
    findings.extend(broken.into_iter().map(|((from, to), (allowed, edges))| Finding::Layer {
        from,
        to,
        allowed,
        edges,
    }));
    findings
}

// ---------------------------------------------------------------------------
// The workspace
// ---------------------------------------------------------------------------

/// Reads every `.rs` file under `crate_dir/src`, keyed by its path relative
/// to `src/`; messages show files as `display_name/src/…`.
pub(crate) fn read_sources(crate_dir: &Path, display_name: &str) -> anyhow::Result<Sources> {
    fn walk(dir: &Path, rel: &str, files: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(&path, &format!("{rel}{name}/"), files)?;
            } else if name.ends_with(".rs") {
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                files.insert(format!("{rel}{name}"), text);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(&crate_dir.join("src"), "", &mut files)?;
    Ok(Sources { display_prefix: format!("{display_name}/src/"), files })
}

/// The findings of every target of every crate of [`WORKSPACE_CRATES`], as
/// (target label, findings); targets without findings are left out.
pub(crate) fn check_workspace(root: &Path) -> anyhow::Result<Vec<(String, Vec<Finding>)>> {
    let mut report = Vec::new();
    for &(dir, layers) in WORKSPACE_CRATES {
        let sources = read_sources(&root.join(dir), dir)?;
        for target in targets(dir, &sources) {
            let findings = check(&target, layers.filter(|_| target.is_lib));
            if !findings.is_empty() {
                report.push((target.label, findings));
            }
        }
    }
    Ok(report)
}

/// The report as text: a heading per target, then its findings.
pub(crate) fn render(report: &[(String, Vec<Finding>)]) -> String {
    let mut out = String::new();
    for (label, findings) in report {
        let cycles = findings.iter().filter(|f| matches!(f, Finding::Cycle { .. })).count();
        out.push_str(&format!("{label}: {cycles} cycle(s), {} other finding(s)\n", findings.len() - cycles));
        for f in findings {
            out.push_str(&f.to_string());
        }
        out.push('\n');
    }
    out
}

/// `cargo xtask layers`: prints the report; fails if it finds anything.
pub(crate) fn run() -> anyhow::Result<()> {
    let report = check_workspace(&crate::cmd::workspace_root())?;
    if report.is_empty() {
        println!("layers: no cycles, every layer rule kept");
        return Ok(());
    }
    print!("{}", render(&report));
    anyhow::bail!("layers: {} target(s) with findings (see above)", report.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The references of `src` as (segments joined, line).
    fn refs(src: &str) -> Vec<(String, u32)> {
        scan_file(src).refs.into_iter().map(|r| (r.segments.join("::"), r.line)).collect()
    }

    fn crate_refs(src: &str) -> Vec<String> {
        refs(src)
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| s.starts_with("crate") || s.starts_with("super"))
            .collect()
    }

    #[test]
    fn grouped_and_nested_uses_are_flattened() {
        let src = "use crate::{a::{b, c::D}, e};\npub use crate::f::G as H;\npub(crate) use crate::g::*;\n";
        assert_eq!(
            refs(src),
            [
                ("crate::a::b".to_owned(), 1),
                ("crate::a::c::D".to_owned(), 1),
                ("crate::e".to_owned(), 1),
                ("crate::f::G".to_owned(), 2),
                ("crate::g".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn multi_line_uses_give_each_leaf_its_line() {
        let src = "use crate::{\n    os::netlink,\n    control::{\n        self,\n        estimator::Estimate,\n    },\n};";
        assert_eq!(
            refs(src),
            [
                ("crate::os::netlink".to_owned(), 2),
                ("crate::control".to_owned(), 4),
                ("crate::control::estimator::Estimate".to_owned(), 5)
            ]
        );
    }

    #[test]
    fn self_super_and_paths_in_code() {
        let src = "use self::inner::X;\nuse super::{self, sibling::Y};\nfn f() { crate::a::b::run::<u8>(); let _ = super::super::z::Z; }\n";
        assert_eq!(
            refs(src),
            [
                ("self::inner::X".to_owned(), 1),
                ("super".to_owned(), 2),
                ("super::sibling::Y".to_owned(), 2),
                ("crate::a::b::run".to_owned(), 3),
                ("super::super::z::Z".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn comments_and_literals_are_not_references() {
        let src = r####"
//! See [`crate::os::netlink`].
/// Like [`crate::a::B`] but /* not */ here.
/* block /* nested crate::b::C */ crate::c::D */
fn f() {
    let _ = "crate::d::E \" crate::e::F";
    let _ = r#"crate::f::G "quoted" "#;
    let _ = br##"crate::g::H"##;
    let _ = b"crate::h::I";
    let _ = ('"', '\'', b'"', 'x');
    let _: &'static str = "";
    crate::real::Thing::new();
}
"####;
        assert_eq!(refs(src), [("crate::real::Thing::new".to_owned(), 12)]);
    }

    #[test]
    fn visibility_paths_and_precise_capture_are_not_references() {
        let src =
            "pub(crate) fn f() {}\npub(in crate::a) fn g() -> impl Sized + use<> {}\npub(super) struct S;";
        assert_eq!(refs(src), []);
    }

    #[test]
    fn macro_bodies_and_dollar_crate_are_read() {
        let src = "macro_rules! m { () => { $crate::x::Y }; }\nfn f() { println!(\"{}\", crate::z::W); }";
        assert_eq!(crate_refs(src), ["crate::x::Y", "crate::z::W"]);
    }

    #[test]
    fn test_code_is_skipped() {
        let src = "use crate::a::A;\n#[cfg(test)]\nuse crate::t::T;\n#[cfg(test)]\n#[allow(unused)]\nfn helper() { crate::t::u(); }\nfn g() { crate::b::B; }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::os::netlink;\n    #[test]\n    fn t() { crate::daemon::run(); }\n}\n";
        assert_eq!(crate_refs(src), ["crate::a::A", "crate::b::B"]);
        assert!(scan_file(src).mods.is_empty(), "the test module is no module of the graph");
    }

    #[test]
    fn cfg_not_test_is_kept() {
        let src = "#[cfg(not(test))]\nfn f() { crate::a::run(); }";
        assert_eq!(crate_refs(src), ["crate::a::run"]);
    }

    #[test]
    fn module_declarations_inline_and_in_files() {
        let src = "pub mod a;\nmod b { pub(crate) mod c; fn f() { super::a::x(); } }\nmod d;";
        let scan = scan_file(src);
        let mods: Vec<(Vec<String>, String, bool)> =
            scan.mods.into_iter().map(|m| (m.within, m.name, m.inline)).collect();
        assert_eq!(
            mods,
            [
                (vec![], "a".to_owned(), false),
                (vec![], "b".to_owned(), true),
                (vec!["b".to_owned()], "c".to_owned(), false),
                (vec![], "d".to_owned(), false)
            ]
        );
        let r = &scan_file(src).refs[0];
        assert_eq!(
            (r.within.clone(), r.segments.join("::")),
            (vec!["b".to_owned()], "super::a::x".to_owned())
        );
    }

    fn sources(files: &[(&str, &str)]) -> Sources {
        Sources {
            display_prefix: "demo/src/".into(),
            files: files.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect(),
        }
    }

    fn edges(target: &Target) -> Vec<String> {
        target.edges.iter().map(|e| format!("{} -> {}", show(&e.from), show(&e.to))).collect()
    }

    #[test]
    fn references_resolve_to_the_longest_module_prefix() {
        let src = sources(&[
            ("lib.rs", "mod os;\nmod config;\npub use config::Config;\n"),
            ("config.rs", "use crate::os::netlink::Link;\nuse crate::Thing;\n"),
            ("os/mod.rs", "pub mod netlink;\nmod follow;\npub use netlink::Link;\n"),
            ("os/netlink.rs", "use super::follow::F;\nuse std::io;\nfn f() { super::g(); }\n"),
            ("os/follow.rs", "use self::inner::X;\nmod inner {}\n"),
        ]);
        let [target] = &targets("demo", &src)[..] else { panic!("one target") };
        assert_eq!(
            edges(target),
            [
                "crate root -> config",
                "os -> os::netlink",
                "config -> os::netlink",
                "config -> crate root",
                "os::netlink -> os::follow",
                "os::netlink -> os",
                "os::follow -> os::follow::inner"
            ]
        );
        assert!(target.missing.is_empty());
    }

    #[test]
    fn a_cycle_inside_one_top_level_module_is_found() {
        let src = sources(&[
            ("lib.rs", "mod os;\nmod net;"),
            ("net.rs", "use crate::os::Facts;"),
            ("os/mod.rs", "mod netlink;\nmod sysfs;\npub use netlink::Facts;"),
            ("os/netlink.rs", "use super::sysfs::read;\npub struct Facts;"),
            ("os/sysfs.rs", "use super::Facts;\npub fn read() {}"),
        ]);
        let text: String = check(&targets("demo", &src)[0], None).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            "cycle: os -> os::netlink -> os::sysfs -> os\n    \
             os -> os::netlink: demo/src/os/mod.rs:3: use netlink::Facts\n    \
             os::netlink -> os::sysfs: demo/src/os/netlink.rs:1: use super::sysfs::read\n    \
             os::sysfs -> os: demo/src/os/sysfs.rs:1: use super::Facts\n"
        );
    }

    #[test]
    fn bin_files_are_targets_of_their_own() {
        let src = sources(&[
            ("lib.rs", "pub mod a;"),
            ("a.rs", ""),
            ("main.rs", "use demo::a;"),
            ("bin/tool.rs", ""),
            ("bin/big/main.rs", "mod helper;\nuse crate::helper::H;"),
            ("bin/big/helper.rs", ""),
        ]);
        let all = targets("demo", &src);
        let labels: Vec<&str> = all.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["demo (lib)", "demo (main.rs)", "demo (bin/big/main.rs)", "demo (bin/tool.rs)"]);
        assert_eq!(edges(&all[2]), ["crate root -> helper"]);
    }

    #[test]
    fn a_missing_module_file_is_reported() {
        let src = sources(&[("lib.rs", "mod gone;")]);
        let findings = check(&targets("demo", &src)[0], None);
        assert_eq!(
            findings.iter().map(ToString::to_string).collect::<String>(),
            "module: demo/src/lib.rs: `mod gone` has no file gone.rs or gone/mod.rs\n"
        );
    }

    fn fixture(name: &str) -> Target {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        let sources = read_sources(&dir, name).expect("fixture readable");
        targets(name, &sources).into_iter().next().expect("a lib target")
    }

    #[test]
    fn the_cycle_fixture_reports_its_cycle_with_file_and_line() {
        let findings = check(&fixture("cycle"), None);
        let text: String = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            "cycle: alpha -> beta -> delta -> alpha\n    \
             alpha -> beta: cycle/src/alpha.rs:7: use crate::beta::gamma::Gamma\n    \
             beta -> delta: cycle/src/beta/gamma.rs:11: crate::delta::step (path in code)\n    \
             delta -> alpha: cycle/src/delta.rs:3: use super::alpha::Alpha\n"
        );
    }

    #[test]
    fn the_layer_fixture_names_the_offending_use() {
        let findings = check(&fixture("layer"), Some(STRATA_CTL_LAYERS));
        let text: String = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            "layer: config may not use crate root (config may use: control, auth)\n    \
             layer/src/config.rs:4: crate::VERSION (path in code)\n\
             layer: control may not use os (control may use: nothing else in the crate)\n    \
             layer/src/control/estimator.rs:6: use crate::os::netlink::LinkEvent\n"
        );
    }

    #[test]
    fn a_module_without_a_layer_is_named() {
        let src =
            sources(&[("lib.rs", "mod control;\nmod gadgets;"), ("control.rs", ""), ("gadgets.rs", "")]);
        let findings = check(&targets("demo", &src)[0], Some(STRATA_CTL_LAYERS));
        assert_eq!(
            findings.iter().map(ToString::to_string).collect::<String>(),
            "layer: module gadgets has no layer: add it to the rule table in xtask/src/layers.rs\n"
        );
    }

    #[test]
    fn the_crate_list_matches_the_workspace_members() {
        let manifest =
            std::fs::read_to_string(crate::cmd::workspace_root().join("Cargo.toml")).expect("Cargo.toml");
        let members = manifest.lines().find(|l| l.starts_with("members")).expect("a members line");
        let mut listed: Vec<&str> = members.split('"').skip(1).step_by(2).collect();
        listed.sort_unstable();
        let checked: Vec<&str> = WORKSPACE_CRATES.iter().map(|(dir, _)| *dir).collect();
        assert_eq!(checked, listed, "WORKSPACE_CRATES in xtask/src/layers.rs lists every workspace member");
    }

    #[test]
    fn workspace_has_no_cycles_and_respects_layers() {
        let report = check_workspace(&crate::cmd::workspace_root()).expect("workspace sources readable");
        assert!(report.is_empty(), "module cycles or layer violations:\n\n{}", render(&report));
    }
}
