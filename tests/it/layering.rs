//! The layering of `src/`: which top-level module imports which, read from
//! the code itself. Modules must not import each other in a loop, and an
//! import may go only sideways or down the README's layer table (Layout →
//! Layers), which must name every top-level module exactly once.
//!
//! Only what is compiled into the daemon counts: `#[cfg(test)]` items are
//! skipped, and doc comments are attributes, never paths, so the modules they
//! name for the reader are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Files of the crate root that wire modules rather than belong to one.
const ROOTS: [&str; 2] = ["lib.rs", "main.rs"];

/// One import: from a top-level module to another, and the file it is in.
type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn src_has_no_import_cycle_and_no_import_up_the_layer_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    let edges = imports(&src, &modules);

    let cycles = cycles(&modules, &edges);
    assert!(cycles.is_empty(), "modules that import each other in a loop:\n{}", describe_cycles(&cycles, &edges));

    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let layers = layer_table(&readme);
    let listed: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(listed, modules, "the README's layer table must name exactly the top-level modules of src/");

    let upward: Vec<String> = edges
        .iter()
        .flat_map(|(from, targets)| targets.iter().map(move |(to, files)| (from, to, files)))
        .filter(|(from, to, _)| layers[*to] > layers[*from])
        .map(|(from, to, files)| format!("{from} (layer {}) imports {to} (layer {}) in {files:?}", layers[from], layers[to]))
        .collect();
    assert!(upward.is_empty(), "imports up the README's layer table:\n{}", upward.join("\n"));
}

/// The layering check itself must see an import, a loop and a macro's path,
/// and must not see a test module's or a doc comment's.
#[test]
fn the_layering_check_sees_imports_and_ignores_tests_and_docs() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    let source = r#"
        //! Uses [`crate::d`] in prose only.
        use crate::b::Thing;
        fn f() { super::c::go(); tracing::info!("{}", crate::b::NAME); }
        #[cfg(test)]
        mod tests { use crate::d::Helper; }
    "#;
    let found = file_imports(source, &["a".to_owned()], &modules);
    assert_eq!(found, ["b", "c"].map(String::from).into());

    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.entry(from.into()).or_default().entry(to.into()).or_default().insert("x.rs".into());
    }
    assert_eq!(cycles(&modules, &edges), vec![["a", "b", "c"].map(String::from).into()]);

    let table = "## Layout\n\n| Layer | Modules | Role |\n|---|---|---|\n| 1 | `a`, `b` | base |\n| 2 | `c` | top |\n\n## Next\n| 9 | `d` | not here |\n";
    assert_eq!(layer_table(table), [("a", 1), ("b", 1), ("c", 2)].map(|(m, l)| (m.to_owned(), l)).into());
}

/// Each `src/x.rs` and `src/x/` (the binaries under `src/bin/` aside).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !ROOTS.iter().any(|root| path.ends_with(root)) && !path.ends_with("bin"))
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            if path.is_dir() { Some(name.to_owned()) } else { name.strip_suffix(".rs").map(str::to_owned) }
        })
        .collect()
}

/// Every import between two top-level modules, with the files it is in.
fn imports(src: &Path, modules: &BTreeSet<String>) -> Edges {
    let mut edges = Edges::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let module = module_path(relative);
        let Some(top) = module.first() else { continue };
        if top == "bin" || !modules.contains(top) {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for target in file_imports(&source, &module, modules) {
            if &target != top {
                edges.entry(top.clone()).or_default().entry(target).or_default().insert(relative.display().to_string());
            }
        }
    }
    edges
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// `wallet/plan.rs` is `wallet::plan`, `wallet/mod.rs` is `wallet`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap();
    match file.strip_suffix(".rs") {
        Some("mod") | None => {}
        Some(name) => parts.push(name.to_owned()),
    }
    parts
}

/// The top-level modules one file's code (not its tests) reaches through
/// `crate::` or `super::` paths, in `use` items, expressions, types and macros.
fn file_imports(source: &str, module: &[String], modules: &BTreeSet<String>) -> BTreeSet<String> {
    let file = syn::parse_file(source).unwrap_or_else(|error| panic!("{module:?} does not parse: {error}"));
    let mut visitor = PathVisitor { module: module.to_vec(), targets: BTreeSet::new() };
    visitor.visit_file(&file);
    visitor.targets.retain(|target| modules.contains(target));
    visitor.targets
}

struct PathVisitor {
    /// Where the code being visited sits (inline `mod` blocks included).
    module: Vec<String>,
    targets: BTreeSet<String>,
}

impl PathVisitor {
    /// Records the top-level module a path starting with `segments` reaches.
    fn reach<'s>(&mut self, segments: impl IntoIterator<Item = &'s str>) {
        let mut segments = segments.into_iter().peekable();
        let mut at: Vec<String> = match segments.peek() {
            Some(&"crate") => {
                segments.next();
                Vec::new()
            }
            Some(&"super") | Some(&"self") => self.module.clone(),
            _ => return,
        };
        for segment in segments {
            match segment {
                "super" => {
                    at.pop();
                }
                "self" => {}
                name => {
                    at.push(name.to_owned());
                    break;
                }
            }
        }
        if let Some(top) = at.into_iter().next() {
            self.targets.insert(top);
        }
    }

    fn reach_use(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.reach_use(&path.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|item| self.reach_use(item, prefix)),
            syn::UseTree::Name(name) => self.reach_leaf(prefix, &name.ident.to_string()),
            syn::UseTree::Rename(rename) => self.reach_leaf(prefix, &rename.ident.to_string()),
            syn::UseTree::Glob(_) => self.reach_leaf(prefix, "*"),
        }
    }

    fn reach_leaf(&mut self, prefix: &[String], leaf: &str) {
        let path: Vec<&str> = prefix.iter().map(String::as_str).chain([leaf]).collect();
        self.reach(path);
    }
}

/// Whether an item is compiled only into tests.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.meta.require_list().is_ok_and(|list| list.tokens.to_string().replace(' ', "").starts_with("test"))
    })
}

impl<'ast> Visit<'ast> for PathVisitor {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(item) => &item.attrs,
            syn::Item::Enum(item) => &item.attrs,
            syn::Item::Fn(item) => &item.attrs,
            syn::Item::Impl(item) => &item.attrs,
            syn::Item::Macro(item) => &item.attrs,
            syn::Item::Mod(item) => &item.attrs,
            syn::Item::Static(item) => &item.attrs,
            syn::Item::Struct(item) => &item.attrs,
            syn::Item::Trait(item) => &item.attrs,
            syn::Item::Type(item) => &item.attrs,
            syn::Item::Use(item) => &item.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.reach_use(&item.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|segment| segment.ident.to_string()).collect();
        self.reach(segments.iter().map(String::as_str));
        syn::visit::visit_path(self, path);
    }

    /// Macro arguments are tokens, not syntax: look for `crate :: name` and
    /// `super :: name` runs in them.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let text = mac.tokens.to_string();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        for (i, token) in tokens.iter().enumerate() {
            if matches!(*token, "crate" | "super") && tokens.get(i + 1) == Some(&"::") {
                let run: Vec<&str> = tokens[i..].iter().copied().filter(|t| *t != "::").take_while(|t| t.chars().all(|c| c.is_alphanumeric() || c == '_')).collect();
                self.reach(run);
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// The sets of modules (two or more) that reach each other (Tarjan's strongly
/// connected components).
fn cycles(modules: &BTreeSet<String>, edges: &Edges) -> Vec<BTreeSet<String>> {
    struct Search<'e> {
        edges: &'e Edges,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        found: Vec<BTreeSet<String>>,
    }
    impl Search<'_> {
        fn visit(&mut self, node: &str) {
            let n = self.index.len();
            self.index.insert(node.to_owned(), n);
            self.low.insert(node.to_owned(), n);
            self.stack.push(node.to_owned());
            for next in self.edges.get(node).into_iter().flat_map(|targets| targets.keys()) {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node.to_owned(), low);
                } else if self.stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node.to_owned(), low);
                }
            }
            if self.low[node] == self.index[node] {
                let at = self.stack.iter().rposition(|m| m == node).unwrap();
                let component: BTreeSet<String> = self.stack.drain(at..).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for module in modules {
        if !search.index.contains_key(module) {
            search.visit(module);
        }
    }
    search.found
}

fn describe_cycles(cycles: &[BTreeSet<String>], edges: &Edges) -> String {
    let mut text = String::new();
    for cycle in cycles {
        text.push_str(&format!("{cycle:?}:\n"));
        for from in cycle {
            for (to, files) in edges.get(from).into_iter().flatten().filter(|(to, _)| cycle.contains(*to)) {
                text.push_str(&format!("  {from} -> {to} in {files:?}\n"));
            }
        }
    }
    text
}

/// The layer of each module named in the README's Layout section: rows of a
/// table whose first cell is the layer's number and whose second lists its
/// modules in backticks.
fn layer_table(readme: &str) -> BTreeMap<String, u32> {
    let start = readme.find("## Layout").expect("the README has a Layout section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut layers = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(layer), Some(names)) = (cells.get(1).and_then(|cell| cell.trim_end_matches('.').parse::<u32>().ok()), cells.get(2)) else {
            continue;
        };
        for name in names.split('`').skip(1).step_by(2) {
            let previous = layers.insert(name.to_owned(), layer);
            assert!(previous.is_none(), "the README's layer table names {name} twice");
        }
    }
    layers
}
