//! Static checks of the source tree's structure (issue 15): no import cycle between the
//! top-level modules of `src/`, and no function over 80 lines without a reason written
//! next to it (`// Long on purpose: …` within the three lines above or the first line of
//! its body). Test-only code (`*_tests.rs`, `tests.rs`, `src/test_support/`,
//! `src/simulator/local.rs`, and what follows `#[cfg(test)] mod tests {`) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LONGEST: usize = 80;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn test_only(rel: &Path) -> bool {
    let name = rel.file_name().unwrap().to_string_lossy();
    name.ends_with("_tests.rs")
        || name == "tests.rs"
        || rel.starts_with("test_support")
        || rel == Path::new("simulator/local.rs")
}

/// Each non-test source file of `src/`: (path relative to src, text without its test module).
fn sources() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_owned();
            if test_only(&rel) {
                return None;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            Some((rel, code))
        })
        .collect()
}

fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules each top-level module names through `crate::…`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let top = top_module(&rel);
        if top == "lib" || top == "main" {
            continue;
        }
        let deps = g.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    let known: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    g
}

/// The modules reachable from `from`.
fn reachable(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(m) = todo.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // An edge m -> d is on a cycle when m is reachable from d.
    g.iter()
        .flat_map(|(m, deps)| deps.iter().map(move |d| (m, d)))
        .filter(|(m, d)| reachable(g, d).contains(*m))
        .map(|(m, d)| format!("{m} -> {d} -> … -> {m}"))
        .collect()
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = import_graph();
    assert!(
        g.contains_key("actors") && g["actors"].contains("probes"),
        "{g:?}"
    );
    let found = cycles(&g);
    assert!(found.is_empty(), "import cycles: {found:#?}\ngraph: {g:#?}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    g.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(!cycles(&g).is_empty());
    g.get_mut("c").unwrap().clear();
    assert!(cycles(&g).is_empty());
}

/// Functions (`fn name(` at the start of a line) and their length in lines, by brace count
/// (strings and comments are rare enough in signatures and bodies here not to matter much:
/// a miscount shows up as a function to look at, not a silent pass).
fn long_functions(rel: &Path, code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        if !t.starts_with("fn ") {
            continue;
        }
        let (mut depth, mut started, mut end) = (0i32, false, None);
        'body: for (j, line) in lines.iter().enumerate().skip(i) {
            let code_part = line.split("//").next().unwrap();
            if !started && code_part.contains(';') && !code_part.contains('{') {
                break;
            }
            for c in code_part.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
                if started && depth == 0 {
                    end = Some(j);
                    break 'body;
                }
            }
        }
        let Some(end) = end else { continue };
        let n = end - i + 1;
        if n <= LONGEST {
            continue;
        }
        let around = lines[i.saturating_sub(3)..=(i + 1).min(lines.len() - 1)].join("\n");
        if !around.contains("Long on purpose") {
            let name: String = t[3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(format!(
                "src/{}:{} {name} ({n} lines)",
                rel.display(),
                i + 1
            ));
        }
    }
    out
}

#[test]
fn no_function_over_80_lines_without_a_reason() {
    let long: Vec<String> = sources()
        .iter()
        .flat_map(|(rel, code)| long_functions(rel, code))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {LONGEST} lines without a `// Long on purpose: …` reason:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_counts_a_long_function() {
    let body = "    x();\n".repeat(LONGEST);
    let code = format!("fn long() {{\n{body}}}\nfn short() {{\n}}\n");
    let found = long_functions(Path::new("x.rs"), &code);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("long ("), "{found:?}");
    let excused = format!("// Long on purpose: a flat list.\n{code}");
    assert!(long_functions(Path::new("x.rs"), &excused).is_empty());
}
