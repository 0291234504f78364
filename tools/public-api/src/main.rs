//! Prints the public API of a crate from its rustdoc JSON, one item per line, sorted, with the
//! `public-api` crate (blanket impls left out: they follow from the rest).
//!
//! `certrotate-public-api RUSTDOC.json` prints the items; `certrotate-public-api --summary
//! RUSTDOC.json` prints, per public module, its items (those whose parent is the module: types,
//! functions, constants, re-exported items, submodules), the methods and associated items of its
//! types outside trait impls, and their fields and variants.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (summary, path) = match args.as_slice() {
        [flag, path] if flag == "--summary" => (true, path),
        [path] if !path.starts_with('-') => (false, path),
        _ => {
            eprintln!("usage: certrotate-public-api [--summary] RUSTDOC.json");
            return ExitCode::from(2);
        }
    };
    let api = match public_api::Builder::from_rustdoc_json(path)
        .omit_blanket_impls(true)
        .build()
    {
        Ok(api) => api,
        Err(err) => {
            eprintln!("certrotate-public-api: {path}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let lines: Vec<String> = api.items().map(|item| item.to_string()).collect();
    if summary {
        print_summary(&lines);
    } else {
        for line in &lines {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// The item's path: the first word that names an item of the crate, up to its generics,
/// arguments or type (`pub fn certrotate::Manager::start(&self)` gives `certrotate::Manager::start`).
fn item_path<'a>(line: &'a str, krate: &str) -> Option<&'a str> {
    let word = line
        .split(' ')
        .find(|w| w.starts_with(krate) && w[krate.len()..].starts_with("::"))?;
    let end = word
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(word.len());
    Some(word[..end].trim_end_matches(':'))
}

#[derive(Default)]
struct Counts {
    /// Items whose parent is the module.
    items: usize,
    /// Methods and associated items of the module's types outside trait impls.
    inherent: usize,
    /// Fields and variants of the module's types.
    fields: usize,
}

fn print_summary(lines: &[String]) {
    let modules: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(str::trim)
        .collect();
    let krate = modules
        .iter()
        .min_by_key(|m| m.len())
        .copied()
        .unwrap_or("");
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
    // What the lines that follow belong to: a trait impl, an inherent impl, or the type itself.
    #[derive(PartialEq)]
    enum Within {
        Type,
        Inherent,
        TraitImpl,
    }
    let mut within = Within::Type;
    let mut trait_impls = 0usize;
    for line in lines {
        if let Some(rest) = line.strip_prefix("impl") {
            if rest.contains(" for ") {
                within = Within::TraitImpl;
                trait_impls += 1;
            } else {
                within = Within::Inherent;
            }
            continue;
        }
        let Some(path) = item_path(line, krate) else {
            continue;
        };
        let Some((parent, _)) = path.rsplit_once("::") else {
            continue;
        };
        if modules.contains(parent) {
            within = Within::Type;
            counts.entry(parent).or_default().items += 1;
            continue;
        }
        let Some(module) = modules
            .iter()
            .filter(|m| parent.starts_with(**m) && parent[m.len()..].starts_with("::"))
            .max_by_key(|m| m.len())
        else {
            continue;
        };
        let entry = counts.entry(module).or_default();
        match within {
            Within::Inherent => entry.inherent += 1,
            Within::Type => entry.fields += 1,
            Within::TraitImpl => {}
        }
    }
    println!(
        "{:<34} {:>6} {:>9} {:>15}",
        "module", "items", "inherent", "fields/variants"
    );
    let mut total = Counts::default();
    for module in &modules {
        let c = counts.remove(module).unwrap_or_default();
        println!(
            "{:<34} {:>6} {:>9} {:>15}",
            module, c.items, c.inherent, c.fields
        );
        total.items += c.items;
        total.inherent += c.inherent;
        total.fields += c.fields;
    }
    println!(
        "{:<34} {:>6} {:>9} {:>15}",
        "total", total.items, total.inherent, total.fields
    );
    println!("trait impls: {trait_impls}");
}
