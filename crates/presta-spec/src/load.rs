//! Reading desired-state files: YAML syntax, then the JSON Schema (every structural problem
//! at once: unknown fields, wrong types, missing fields), then the typed model, then the
//! semantic rules of [`crate::validate`], then rules across documents and files. Every
//! problem is placed at file, line and column with its field path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Stack;
use crate::position::{self, DocPositions};
use crate::validate;

mod schema_check;
use schema_check::*;

/// One problem in a desired-state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// 1-based document number within the file.
    pub document: Option<usize>,
    /// Dotted field path, e.g. `spec.database.backupRetentionDays`; empty for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What is allowed or what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": error")?;
        if !self.path.is_empty() {
            write!(f, " in `{}`", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// A stack read from a file, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedStack {
    pub stack: Stack,
    pub file: PathBuf,
    /// 1-based document number within the file.
    pub document: usize,
    pub line: usize,
    /// Line of `spec.promotion.after`, when the stack follows another.
    pub promotion_line: Option<usize>,
}

/// Why a desired state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}\n  help: check the path and that the file is readable", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no YAML file (*.yaml or *.yml)\n  help: point at a file, or put the stacks' YAML files in that directory", path.display())]
    EmptyDirectory { path: PathBuf },
    #[error("{} is {size} bytes, over the {limit}-byte limit of a configuration file\n  help: a stack takes about 2 KB; split a very large fleet into several files in a directory, or check that this is the right file", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}", render(problems))]
    Invalid { problems: Vec<Problem> },
}

/// The largest configuration file read (a stack is about 2 KB: room for thousands).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl ConfigError {
    /// The problems, when the configuration was readable but invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

fn render(problems: &[Problem]) -> String {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!(
        "{}\n{} problem{} found",
        list.join("\n"),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

/// Loads a file, or every `*.yaml`/`*.yml` file of a directory (sorted by name).
pub fn load_path(path: &Path) -> Result<Vec<LoadedStack>, ConfigError> {
    load_paths(&[path.to_path_buf()])
}

/// Loads several files or directories as one desired state: every problem of every file is
/// reported, and stack names must be unique across all of them.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<LoadedStack>, ConfigError> {
    let mut stacks = Vec::new();
    let mut problems = Vec::new();
    for file in &config_files(paths)? {
        if let Ok(meta) = std::fs::metadata(file)
            && meta.len() > MAX_FILE_BYTES
        {
            return Err(ConfigError::TooLarge {
                path: file.clone(),
                size: meta.len(),
                limit: MAX_FILE_BYTES,
            });
        }
        let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        match parse_file(&source, file) {
            Ok(mut s) => stacks.append(&mut s),
            Err(mut p) => problems.append(&mut p),
        }
    }
    // Within one file, parse_file already reported duplicates.
    let across: Vec<Problem> = duplicate_names(&stacks)
        .into_iter()
        .filter(|p| {
            !problems
                .iter()
                .any(|q| q.file == p.file && q.line == p.line && q.path == p.path)
        })
        .collect();
    problems.extend(across);
    if problems.is_empty() {
        problems.extend(promotion_problems(&mut stacks));
    }
    if problems.is_empty() {
        Ok(stacks)
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

/// The files a configuration is read from: each file given, and the `*.yaml`/`*.yml` files of
/// each directory given (sorted by name). The daemon watches the same list for changes.
pub fn config_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            if found.is_empty() {
                return Err(ConfigError::EmptyDirectory { path: path.clone() });
            }
            found.sort();
            files.append(&mut found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Parses one file's text; `file` is only used in messages.
pub fn parse_file(source: &str, file: &Path) -> Result<Vec<LoadedStack>, Vec<Problem>> {
    let name = file.display().to_string();
    // The positions of every key take a second YAML parse: made only when a problem needs
    // them (a valid file is read once).
    let index = std::cell::OnceCell::new();
    let starts = document_start_lines(source);
    let mut problems = Vec::new();
    let mut stacks = Vec::new();
    for (i, value) in documents(source, &name)? {
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let place = Place {
            file: &name,
            document: i + 1,
            source,
            index: &index,
        };
        if let Some(stack) = check_document(&value, &place, &mut problems) {
            let promotion_line = stack.spec.promotion.as_ref().and_then(|_| {
                place
                    .positions()
                    .value("spec.promotion.after")
                    .map(|p| p.line)
            });
            stacks.push(LoadedStack {
                stack,
                file: file.to_path_buf(),
                document: i + 1,
                line: starts.get(i).copied().unwrap_or(1),
                promotion_line,
            });
        }
    }

    problems.extend(duplicate_names(&stacks));
    problems.sort_by_key(|p| (p.document, p.line, p.column));
    if stacks.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: name,
            line: None,
            column: None,
            document: None,
            path: String::new(),
            message: "no PrestaShopStack document found".into(),
            help: Some("see config/demo.yaml for a complete example".into()),
        });
    }
    if problems.is_empty() {
        Ok(stacks)
    } else {
        Err(problems)
    }
}

/// The YAML documents of a file, numbered from 0; a syntax error stops the whole file (the
/// rest of the stream cannot be trusted after one).
fn documents(source: &str, name: &str) -> Result<Vec<(usize, Value)>, Vec<Problem>> {
    let mut values = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(source).enumerate() {
        match Value::deserialize(doc) {
            Ok(v) => values.push((i, v)),
            Err(e) => {
                let loc = e.location();
                return Err(vec![Problem {
                    file: name.to_string(),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    document: Some(i + 1),
                    path: String::new(),
                    message: format!("invalid YAML: {}", strip_location(&e.to_string())),
                    help: Some("fix the YAML syntax (indentation, quotes, `key: value` pairs); the file was not checked further".into()),
                }]);
            }
        }
    }
    Ok(values)
}

/// Where a document's problems are: its file, its number, the positions of its keys (indexed
/// on first use).
struct Place<'a> {
    file: &'a str,
    document: usize,
    source: &'a str,
    index: &'a std::cell::OnceCell<Vec<DocPositions>>,
}

static NO_POSITIONS: std::sync::LazyLock<DocPositions> =
    std::sync::LazyLock::new(DocPositions::default);

impl Place<'_> {
    fn positions(&self) -> &DocPositions {
        self.index
            .get_or_init(|| position::index(self.source))
            .get(self.document - 1)
            .unwrap_or(&NO_POSITIONS)
    }

    /// A problem at `path` (at its key or at its value), placed at the nearest known line.
    fn problem(&self, path: &str, at_key: bool, message: String, help: Option<String>) -> Problem {
        let pos = self.positions();
        let p = if at_key {
            pos.key(path)
        } else {
            pos.value(path)
        };
        let p = p.or_else(|| pos.nearest(path));
        Problem {
            file: self.file.to_string(),
            line: p.map(|p| p.line),
            column: p.map(|p| p.column),
            document: Some(self.document),
            path: path.to_string(),
            message,
            help,
        }
    }
}

/// Checks one document against the schema, the types and the validation rules; every problem
/// goes to `problems`. The stack, when it has no structural problem.
fn check_document(value: &Value, place: &Place<'_>, problems: &mut Vec<Problem>) -> Option<Stack> {
    if !value.is_object() {
        problems.push(place.problem(
            "",
            false,
            format!(
                "expected a `{}` document (a mapping), found {}",
                crate::defaults::KIND,
                json_type(value)
            ),
            Some("start the document with `apiVersion: presta-reconciler.io/v1alpha1` and `kind: PrestaShopStack`".into()),
        ));
        return None;
    }

    // A document the types accept satisfies the schema derived from them: the schema pass
    // (which compiles a validator) only runs to list every structural problem at once.
    if let Ok(stack) = Stack::deserialize(value) {
        for finding in validate::validate_stack(&stack) {
            problems.push(place.problem(&finding.path, false, finding.message, finding.help));
        }
        return Some(stack);
    }
    let schema_problems = schema_findings(value);
    let structural_ok = schema_problems.is_empty();
    // Remove what the schema refused, so that the rest of the document can still be
    // typed and checked: one run reports every problem, not one batch at a time.
    let mut pruned = value.clone();
    let mut reported: Vec<String> = Vec::new();
    for (finding, at_key) in schema_problems {
        prune(&mut pruned, &finding.path);
        reported.push(finding.path.clone());
        problems.push(place.problem(&finding.path, at_key, finding.message, finding.help));
    }

    let stack: Stack = match serde_path_to_error::deserialize(&pruned) {
        Ok(s) => s,
        Err(_) if !structural_ok => return None, // e.g. a required field is missing: said above
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            problems.push(place.problem(&path, false, e.inner().to_string(), None));
            return None;
        }
    };
    let under_reported = |path: &str| {
        reported.iter().any(|r| {
            path == r || path.starts_with(&format!("{r}.")) || path.starts_with(&format!("{r}["))
        })
    };
    for finding in validate::validate_stack(&stack) {
        if !under_reported(&finding.path) {
            problems.push(place.problem(&finding.path, false, finding.message, finding.help));
        }
    }
    structural_ok.then_some(stack)
}

/// The first line (1-based) of each document's content, in the order serde_yaml reads the
/// documents: a document starts at the top of the file or at a `---` line; blank lines,
/// comments and directives before its content are skipped (an empty document starts at its
/// `---`).
fn document_start_lines(source: &str) -> Vec<usize> {
    let mut starts: Vec<Option<usize>> = vec![None];
    let mut markers: Vec<usize> = vec![1];
    for (n, line) in source.lines().enumerate() {
        let number = n + 1;
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            // Content before the first marker made no document of its own.
            if starts.len() == 1 && starts[0].is_none() {
                starts.clear();
                markers.clear();
            }
            let rest = trimmed.trim_start_matches('-').trim();
            starts.push((!rest.is_empty() && !rest.starts_with('#')).then_some(number));
            markers.push(number);
            continue;
        }
        let content = !trimmed.trim().is_empty()
            && !trimmed.trim_start().starts_with('#')
            && !trimmed.starts_with('%')
            && trimmed != "...";
        if let Some(last) = starts.last_mut()
            && last.is_none()
            && content
        {
            *last = Some(number);
        }
    }
    starts
        .iter()
        .zip(markers)
        .map(|(s, m)| s.unwrap_or(m))
        .collect()
}

/// serde_yaml's message already ends with " at line L column C": the problem shows it.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Promotions across the configuration: each followed stack exists, and no chain of
/// promotions comes back to where it started. Fills in each followed stack's region.
fn promotion_problems(stacks: &mut [LoadedStack]) -> Vec<Problem> {
    let by_name: BTreeMap<String, (String, String, usize)> = stacks
        .iter()
        .map(|s| {
            (
                s.stack.name().to_string(),
                (
                    s.stack.spec.region.clone(),
                    s.file.display().to_string(),
                    s.line,
                ),
            )
        })
        .collect();
    let follows: BTreeMap<&str, &str> = stacks
        .iter()
        .filter_map(|s| {
            let p = s.stack.spec.promotion.as_ref()?;
            Some((s.stack.name(), p.after.as_str()))
        })
        .collect();
    let mut problems = Vec::new();
    for s in stacks.iter() {
        let Some(p) = &s.stack.spec.promotion else {
            continue;
        };
        let problem = |message: String, help: String| Problem {
            file: s.file.display().to_string(),
            line: Some(s.promotion_line.unwrap_or(s.line)),
            column: None,
            document: Some(s.document),
            path: "spec.promotion.after".into(),
            message,
            help: Some(help),
        };
        if !by_name.contains_key(&p.after) {
            let known: Vec<&str> = by_name.keys().map(String::as_str).collect();
            problems.push(problem(
                format!(
                    "stack `{}` follows `{}`, which is in none of the files given",
                    s.stack.name(),
                    p.after
                ),
                format!(
                    "give the file that declares `{}` too (stacks found: {})",
                    p.after,
                    known.join(", ")
                ),
            ));
            continue;
        }
        // Walk the chain from this stack; coming back to it is a cycle.
        let mut chain = vec![s.stack.name()];
        let mut at = p.after.as_str();
        while let Some(next) = follows.get(at) {
            chain.push(at);
            if at == s.stack.name() {
                break;
            }
            if chain[..chain.len() - 1].contains(&at) {
                chain.clear(); // a cycle that does not pass through this stack
                break;
            }
            at = next;
        }
        if chain.len() > 1 && chain.last() == Some(&s.stack.name()) {
            let (_, file, line) = &by_name[&p.after];
            problems.push(problem(
                format!(
                    "promotion cycle: {} (`{}` is declared in {file}, line {line})",
                    chain.join(" follows "),
                    p.after
                ),
                "a chain of promotions must end at a stack that follows none, e.g. staging".into(),
            ));
        }
    }
    let followers: Vec<(String, String)> = follows
        .iter()
        .map(|(follower, after)| (follower.to_string(), after.to_string()))
        .collect();
    if problems.is_empty() {
        link_promotions(stacks, &by_name, &followers);
    }
    problems
}

/// What a stack needs of the stacks around it, once the promotions are valid: the followed
/// stack's region and Auto Scaling group (its `spec.names`, else the deterministic name), and
/// the stacks that follow it.
fn link_promotions(
    stacks: &mut [LoadedStack],
    by_name: &BTreeMap<String, (String, String, usize)>,
    followers: &[(String, String)],
) {
    let groups: BTreeMap<String, String> = stacks
        .iter()
        .map(|s| {
            let group = s
                .stack
                .resource_name(crate::naming::Component::AutoScalingGroup);
            (s.stack.name().to_string(), group)
        })
        .collect();
    for s in stacks.iter_mut() {
        if let Some(p) = &mut s.stack.spec.promotion {
            p.after_region = by_name.get(&p.after).map(|(region, _, _)| region.clone());
            p.after_group = groups.get(&p.after).cloned();
        }
        let name = s.stack.name().to_string();
        s.stack.spec.followed_by = followers
            .iter()
            .filter(|(_, after)| *after == name)
            .map(|(follower, _)| follower.clone())
            .collect();
    }
}

fn duplicate_names(stacks: &[LoadedStack]) -> Vec<Problem> {
    let mut first: BTreeMap<&str, &LoadedStack> = BTreeMap::new();
    let mut problems = Vec::new();
    for s in stacks {
        match first.get(s.stack.name()) {
            None => {
                first.insert(s.stack.name(), s);
            }
            Some(earlier) => problems.push(Problem {
                file: s.file.display().to_string(),
                line: Some(s.line),
                column: None,
                document: Some(s.document),
                path: "metadata.name".into(),
                message: format!(
                    "stack `{}` is declared twice: it is already declared in {} (document {}, line {})",
                    s.stack.name(),
                    earlier.file.display(),
                    earlier.document,
                    earlier.line
                ),
                help: Some("stack names must be unique: AWS resource names are derived from them".into()),
            }),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_starts_match_the_position_index() {
        let sources = [
            "a: 1\n",
            "# head\n\n---\na: 1\n---\n# c\nb: 2\n",
            "---\na: 1\n\n---\n\n\nb:\n  c: 3\n",
            "%YAML 1.2\n---\na: 1\n...\n---\nb: 2\n",
        ];
        for src in sources {
            let index = position::index(src);
            let starts = document_start_lines(src);
            for (i, doc) in index.iter().enumerate() {
                if let Some(p) = doc.start {
                    assert_eq!(starts.get(i).copied(), Some(p.line), "{src:?} document {i}");
                }
            }
        }
        // A trailing `---` is an empty document (skipped by the loader): it starts there.
        assert_eq!(document_start_lines("a: 1\n---\n"), [1, 2]);
    }

    #[test]
    fn dotted_paths_distinguish_lists_from_maps() {
        let v: Value = serde_json::json!({"a": {"0": {"b": [1, {"c": 2}]}}});
        let segs = pointer_segments("/a/0/b/1/c");
        assert_eq!(dotted(&v, &segs), "a.0.b[1].c");
    }

    #[test]
    fn prune_removes_keys_and_list_items() {
        let mut v: Value = serde_json::json!({"a": {"b": [1, {"c": 2, "d": 3}], "e": 4}});
        prune(&mut v, "a.b[1].c");
        prune(&mut v, "a.e");
        assert_eq!(v, serde_json::json!({"a": {"b": [1, {"d": 3}]}}));
        prune(&mut v, "a.b[0]");
        assert_eq!(v, serde_json::json!({"a": {"b": [{"d": 3}]}}));
        prune(&mut v, "zz.yy");
        assert_eq!(v, serde_json::json!({"a": {"b": [{"d": 3}]}}));
    }

    #[test]
    fn pointer_unescapes() {
        assert_eq!(
            pointer_segments("/a~1b/c~0d"),
            vec!["a/b".to_string(), "c~d".to_string()]
        );
    }

    #[test]
    fn yaml_location_is_stripped_from_messages() {
        assert_eq!(
            strip_location("did not find expected key at line 3 column 1"),
            "did not find expected key"
        );
    }
}
