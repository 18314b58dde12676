//! `--explain`: which step (image config, each plugin) changed which JSON
//! field of config.json, which plugins overrode others, which were skipped.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::apply::Override;

/// How one JSON field changed. Paths are JSON pointers (`/process/env`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// A value appeared or was replaced.
    Set { path: String, before: Option<Value>, after: Value },
    /// A value disappeared.
    Removed { path: String, before: Value },
    /// Items were added to or removed from a list.
    Items { path: String, added: Vec<Value>, removed: Vec<Value> },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Set { path, .. } | Change::Removed { path, .. } | Change::Items { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Applied,
    /// An optional plugin failed; its adjustment was not applied.
    Skipped {
        error: String,
    },
}

/// One step of assembly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// `defaults`, `image-config`, or the plugin's name.
    pub source: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Explanation {
    pub steps: Vec<Step>,
}

impl Explanation {
    /// The step of `source` (the last, if it ran more than once).
    pub fn step(&self, source: &str) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.source == source)
    }

    /// The sources that changed `path` (a JSON pointer), something under it,
    /// or the object holding it, in order.
    pub fn changed_by(&self, path: &str) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| {
                s.changes.iter().any(|c| {
                    let p = c.path();
                    p == path || p.starts_with(&format!("{path}/")) || path.starts_with(&format!("{p}/"))
                })
            })
            .map(|s| s.source.as_str())
            .collect()
    }
}

/// The changes from `before` to `after`.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    diff_at(String::new(), Some(before), Some(after), &mut out);
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff_at(path: String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    match (before, after) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                diff_at(format!("{path}/{}", escape(key)), a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            let mut removed: Vec<Value> = Vec::new();
            let mut remaining: Vec<&Value> = b.iter().collect();
            for item in a {
                match remaining.iter().position(|r| *r == item) {
                    Some(i) => {
                        remaining.remove(i);
                    }
                    None => removed.push(item.clone()),
                }
            }
            let added: Vec<Value> = remaining.into_iter().cloned().collect();
            if added.is_empty() && removed.is_empty() {
                // Same items, new order: a replacement.
                out.push(Change::Set { path, before: Some(Value::Array(a.clone())), after: Value::Array(b.clone()) });
            } else {
                out.push(Change::Items { path, added, removed });
            }
        }
        (before, Some(b)) => out.push(Change::Set { path, before: before.cloned(), after: b.clone() }),
        (Some(a), None) => out.push(Change::Removed { path, before: a.clone() }),
        (None, None) => {}
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}...")
    } else {
        text
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Set { path, before: None, after } => write!(f, "{path}: set {}", short(after)),
            Change::Set { path, before: Some(b), after } => write!(f, "{path}: {} -> {}", short(b), short(after)),
            Change::Removed { path, before } => {
                write!(f, "{path}: removed (was {})", short(before))
            }
            Change::Items { path, added, removed } => {
                write!(f, "{path}:")?;
                for item in added {
                    write!(f, " +{}", short(item))?;
                }
                for item in removed {
                    write!(f, " -{}", short(item))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            match &step.outcome {
                Outcome::Applied if step.changes.is_empty() => writeln!(f, "{}: no changes", step.source)?,
                Outcome::Applied => writeln!(f, "{}:", step.source)?,
                Outcome::Skipped { error } => {
                    writeln!(f, "{}: skipped (optional plugin failed: {error})", step.source)?
                }
            }
            for change in &step.changes {
                writeln!(f, "  {change}")?;
            }
            for o in &step.overrides {
                writeln!(
                    f,
                    "  overrides {}: {} -> {} (set by {:?})",
                    o.key, o.previous_value, o.value, o.previous_plugin
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_reports_pointers_and_items() {
        let a = json!({"process": {"env": ["A=1", "B=2"], "cwd": "/"}, "hostname": "x", "root": {"path": "r"}});
        let b = json!({"process": {"env": ["A=1", "C=3"], "cwd": "/w"}, "root": {"path": "r", "readonly": true}});
        let changes = diff(&a, &b);
        assert_eq!(
            changes,
            vec![
                Change::Removed { path: "/hostname".into(), before: json!("x") },
                Change::Set { path: "/process/cwd".into(), before: Some(json!("/")), after: json!("/w") },
                Change::Items { path: "/process/env".into(), added: vec![json!("C=3")], removed: vec![json!("B=2")] },
                Change::Set { path: "/root/readonly".into(), before: None, after: json!(true) },
            ]
        );
        let text = Explanation {
            steps: vec![Step { source: "p".into(), outcome: Outcome::Applied, changes, overrides: vec![] }],
        }
        .to_string();
        assert!(text.contains("/process/env: +\"C=3\" -\"B=2\""), "{text}");
    }
}
