//! The library's modules form layers, and no module imports from a layer above its own.
//!
//! Reads every `.rs` file under `src/` (the `certrotate` command in `src/bin` is a separate
//! crate and is skipped), takes each `crate::…` path in code (comments, doc links and string
//! literals are left out; `use crate::{a::X, b::Y}` groups count each member; a path through
//! a root re-export such as `crate::KubeCsrClient` counts as the module that defines it), and
//! builds the graph of edges between top-level modules (`src/X.rs` or `src/X/…` is module
//! `X`). Test code inside `src/` counts like any other code.
//!
//! Fails when a module imports from a higher layer, when two modules import each other
//! through any chain (a cycle), or when a top-level module has no layer in [`LAYERS`].
//! Prints the graph's figures (modules, edges, largest cycle) either way; see them with
//! `cargo test --test layers -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[path = "support/sources.rs"]
mod sources;
use sources::rust_files;

/// The layers, lowest first. A module may import from its own layer (as long as no cycle
/// forms) and from any layer below, never from one above.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "data and vocabulary",
        &["clock", "usages", "template", "metrics", "report"],
    ),
    ("certificates and keys", &["pki"]),
    (
        "storage, the CSR API, publication",
        &["store", "csr", "resolver"],
    ),
    ("the crate's error", &["error"]),
    (
        "rotation policy and the certificate-request steps",
        &["schedule", "policy", "request"],
    ),
    ("the manager and its rotation thread", &["manager"]),
    (
        "integrations",
        &[
            "tls",
            "kubeconfig",
            "kubelet",
            "server",
            "testing",
            "fuzzing",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// `src` with comments, string literals and char literals blanked out (replaced by spaces,
/// so that byte offsets stay meaningful for messages).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == b'r' || (c == b'b' && next == Some(b'r')))
            && !prev_is_ident(b, i)
            && raw_string_start(b, i + usize::from(c == b'b') + 1).is_some()
        {
            let start = i + usize::from(c == b'b') + 1;
            let hashes = raw_string_start(b, start).unwrap_or(0);
            let mut j = start + hashes + 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is blanked.
            let end = if next == Some(b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&ch| ch == b'\'')
                    .map(|p| i + 2 + p)
            } else {
                // One UTF-8 character then a quote.
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
            };
            match end {
                Some(e) => {
                    for &ch in &b[i..=e] {
                        blank(&mut out, ch);
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// At `i`: `#…#"` starts a raw string; the number of hashes.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i.min(b.len())..]
        .iter()
        .take_while(|&&h| h == b'#')
        .count();
    (b.get(i + hashes) == Some(&b'"')).then_some(hashes)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path a `use`/expression path starting right after `crate::`
/// names: `pki::X` gives `pki`; `{a::X, b::{Y, Z}, C}` gives `a`, `b`, `C`.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut item_start = true;
        for (k, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    item_start = false;
                    let name = ident_at(&group[k..]);
                    if !name.is_empty() {
                        names.push(name.to_owned());
                    }
                }
                _ => {}
            }
        }
        names
    } else {
        let name = ident_at(rest);
        if name.is_empty() {
            vec![]
        } else {
            vec![name.to_owned()]
        }
    }
}

/// Root re-exports of `src/lib.rs` (`pub use clock::{Clock, …};`): name → defining module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut map = BTreeMap::new();
    for (pos, _) in code.match_indices("pub use ") {
        let rest = &code[pos + "pub use ".len()..];
        let rest = rest.strip_prefix("crate::").unwrap_or(rest);
        let module = ident_at(rest);
        let Some(after) = rest[module.len()..].strip_prefix("::") else {
            continue;
        };
        let stmt = &after[..after.find(';').unwrap_or(after.len())];
        let inner = stmt.trim().trim_start_matches('{').trim_end_matches('}');
        for item in inner.split(',') {
            // The last segment, or the `as` alias.
            let item = item.trim();
            let name = match item.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => item.rsplit("::").next().unwrap_or(item),
            };
            if !name.is_empty() && name != "self" {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map
}

struct Graph {
    modules: BTreeSet<String>,
    /// (from, to) → the first place it is seen, `file:line`.
    edges: BTreeMap<(String, String), String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let reexports = root_reexports(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    let mut edges = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let first = first.as_os_str().to_string_lossy();
        if first == "bin" || first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        modules.insert(module.clone());
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let code = code_only(&text);
        let bytes = code.as_bytes();
        for (pos, _) in code.match_indices("crate::") {
            if pos > 0 && (prev_is_ident(bytes, pos) || bytes[pos - 1] == b'$') {
                continue;
            }
            for seg in first_segments(&code[pos + "crate::".len()..]) {
                let target = match reexports.get(&seg) {
                    Some(m) => m.clone(),
                    None => seg,
                };
                // Items defined in lib.rs itself (constants) are nobody's layer.
                let is_module = src.join(format!("{target}.rs")).exists()
                    || src.join(&target).join("mod.rs").exists();
                if target == module || !is_module {
                    continue;
                }
                let line = code[..pos].matches('\n').count() + 1;
                edges
                    .entry((module.clone(), target))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    Graph { modules, edges }
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut St<'a>, v: &'a str) {
        st.index.insert(v, st.next);
        st.low.insert(v, st.next);
        st.next += 1;
        st.stack.push(v);
        st.on.insert(v);
        let g = st.g;
        for (from, to) in g.edges.keys() {
            if from != v {
                continue;
            }
            let w = to.as_str();
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                st.out.push(comp);
            }
        }
    }
    let mut st = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = g
        .modules
        .iter()
        .map(String::as_str)
        .chain(g.edges.keys().flat_map(|(a, b)| [a.as_str(), b.as_str()]))
        .collect();
    for v in nodes {
        if !st.index.contains_key(v) {
            visit(&mut st, v);
        }
    }
    st.out
}

#[test]
fn modules_import_only_from_their_own_layer_or_below_and_form_no_cycle() {
    let g = graph();
    let cycles = cycles(&g);
    let largest = cycles.iter().map(Vec::len).max().unwrap_or(0);
    println!(
        "top-level modules: {}, edges between them: {}, cycles: {}, largest cycle: {} modules",
        g.modules.len(),
        g.edges.len(),
        cycles.len(),
        largest
    );
    for ((from, to), at) in &g.edges {
        println!("  {from} -> {to}  ({at})");
    }
    let mut problems = Vec::new();
    for m in &g.modules {
        if layer_of(m).is_none() {
            problems.push(format!(
                "module {m} has no layer: add it to LAYERS in tests/layers.rs"
            ));
        }
    }
    for ((from, to), at) in &g.edges {
        if let (Some(lf), Some(lt)) = (layer_of(from), layer_of(to))
            && lt > lf
        {
            problems.push(format!(
                "{from} ({}) imports {to} ({}), a higher layer, at {at}",
                LAYERS[lf].0, LAYERS[lt].0
            ));
        }
    }
    for c in &cycles {
        problems.push(format!("import cycle among {}: {}", c.len(), c.join(", ")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_paths_only_in_code() {
    let src = r##"
use crate::{a::X, b::{Y, Z}, C};
// use crate::commented::X;
/// [link](crate::doc::Link)
let s = "crate::in_string";
let r = r#"crate::in_raw "# ;
let c = '"'; let d = crate::expr::f(x);
fn f<'a>(x: &'a crate::lifetime::T) {}
/* crate::block /* nested */ crate::still_block */
"##;
    let code = code_only(src);
    let mut found = Vec::new();
    for (pos, _) in code.match_indices("crate::") {
        found.extend(first_segments(&code[pos + 7..]));
    }
    assert_eq!(found, ["a", "b", "C", "expr", "lifetime"]);
}
