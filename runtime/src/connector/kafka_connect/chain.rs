//! A Kafka Connect config's `transforms` and `predicates`: each alias as a native chain step
//! with its condition.

use serde_json::{Value, json};

use super::values::parse_boolean;
use super::{Given, PREDICATES, PluginKeys, Plugins, Scope, Texts, Translation, with_defaults};

impl Translation {
    /// Transform `alias` (the `i`th of `transforms`) as a native chain step.
    pub(super) fn transform(
        &mut self,
        i: usize,
        alias: &str,
        texts: &Texts,
        predicates: &[String],
        plugins: &dyn Plugins,
    ) -> Option<Value> {
        let at = format!("transforms.{alias}.");
        let type_key = format!("{at}type");
        let Some(class) = texts.get(&type_key) else {
            self.problem(&type_key, "missing: the transform's class or plugin");
            return None;
        };
        let plugin = match plugins.find(class) {
            Ok(p) if p.kind == "transform" => p,
            Ok(p) => {
                self.problem(
                    &type_key,
                    format!("{class:?} is a {} plugin, not a transform", p.kind),
                );
                return None;
            }
            Err(e) => {
                self.problem(&type_key, e);
                return None;
            }
        };
        let mut own = PluginKeys::new();
        let mut condition: Option<(String, bool)> = None;
        let mut negate = false;
        for (key, text) in texts.range(at.clone()..) {
            let Some(name) = key.strip_prefix(&at) else {
                break;
            };
            match name {
                "type" => {}
                "predicate" => {
                    if !predicates.iter().any(|p| p == text) {
                        self.problem(key, format!("{text:?} is not one of `predicates`"));
                    }
                    condition = Some((text.clone(), false));
                }
                "negate" => match parse_boolean(text) {
                    Ok(b) => negate = b,
                    Err(e) => self.problem(key, format!("{text:?} does not convert: expected {e}")),
                },
                _ => {
                    let scope = Scope { at: &at, texts };
                    if !self.declared(&plugin.declared, &mut own, None, &scope, name, text) {
                        self.own(&mut own, &at, name, Given::plain(name, text));
                    }
                }
            }
        }
        let native_at = format!("transforms[{i}]");
        let config = self.plugin_config(
            &own,
            plugin.spec.as_deref(),
            &at,
            &format!("{native_at}.config"),
        );
        let config = with_defaults(config, &plugin.declared);
        self.renames
            .push((format!("{native_at}.plugin"), type_key.clone()));
        self.renames
            .push((native_at.clone(), at.trim_end_matches('.').to_owned()));
        let mut step = json!({ "plugin": plugin.path.display().to_string(), "config": config });
        if let Some((predicate, _)) = condition {
            let key = if negate { "unless" } else { "when" };
            if let Some(p) = self.predicate(&predicate, texts) {
                step[key] = p;
            }
            self.renames
                .push((format!("{native_at}.{key}"), format!("{at}predicate")));
        }
        Some(step)
    }

    /// Predicate `alias` as a native condition.
    fn predicate(&mut self, alias: &str, texts: &Texts) -> Option<Value> {
        let at = format!("predicates.{alias}.");
        let type_key = format!("{at}type");
        let Some(class) = texts.get(&type_key) else {
            self.problem(&type_key, "missing: the predicate's class");
            return None;
        };
        let Some((_, native, argument)) = PREDICATES.iter().find(|(c, _, _)| c == class) else {
            let known: Vec<&str> = PREDICATES.iter().map(|(c, _, _)| *c).collect();
            self.problem(
                &type_key,
                format!(
                    "{class:?} is not a predicate wasmconnect knows; it knows {}",
                    known.join(", ")
                ),
            );
            return None;
        };
        for (key, _) in texts.range(at.clone()..) {
            let Some(name) = key.strip_prefix(&at) else {
                break;
            };
            if name != "type" && Some(name) != *argument {
                self.problem(key, format!("is not a setting of {class}"));
            }
        }
        match argument {
            None => Some(json!({ *native: true })),
            Some(arg) => {
                let key = format!("{at}{arg}");
                match texts.get(&key) {
                    Some(value) => Some(json!({ *native: value })),
                    None => {
                        self.problem(&key, format!("missing: {class} needs it"));
                        None
                    }
                }
            }
        }
    }
}
