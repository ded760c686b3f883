//! The wasmtime engine, its epoch ticker, the linker and the compiled-component cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use super::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
use super::capability;
use super::sink::SinkPlugin;
use super::source::SourcePlugin;
use super::spec;
use super::state::TaskState;
use super::transform::TransformPlugin;
use crate::connector::kafka_connect::{Declared, SECTION as KAFKA_CONNECT_SECTION};
use crate::connector::spec::ConfigKey;

/// How often the epoch advances: the granularity of every call deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set in the daemon's environment, builds its engine without epoch interruption: plugin
/// calls run without a deadline (`limits.call_timeout_ms` does nothing, a looping plugin holds
/// its task for good). Only for measuring what the deadline costs end to end
/// (`e2e-bench --no-deadline`); the daemon warns at start when it is set.
pub const NO_CALL_DEADLINE: &str = "WASMCONNECT_NO_CALL_DEADLINE";

/// Why a plugin could not be loaded. Every message names the plugin file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {}: {reason}", path.display())]
    NotComponent { path: PathBuf, reason: String },
    #[error("plugin {}: does not compile: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("plugin {}: {message}", path.display())]
    Contract { path: PathBuf, message: String },
    #[error("plugin {}: needs an import this runtime does not provide: {message}", path.display())]
    Link { path: PathBuf, message: String },
    #[error("plugin {}: its config-spec export failed: {message}", path.display())]
    Spec { path: PathBuf, message: String },
}

/// One per process: compiles each plugin once and hands out cached, pre-linked plugins.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<TaskState>,
    /// What is known of each plugin file, for the build of it last compiled.
    files: Mutex<HashMap<PathBuf, Compiled>>,
}

/// What a plugin file is: the interface it exports and the contract version it was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// `sink`, `source` or `transform`.
    pub kind: String,
    pub version: String,
    /// The Kafka Connect classes and keys it answers to (its `wasmconnect:kafka-connect`
    /// section), if it declares them.
    pub kafka_connect: Option<Declared>,
}

/// A plugin's config keys; `None` when it does not describe them.
type Spec = Option<Vec<ConfigKey>>;

/// What a plugin file is, as `wasmconnect plugin inspect` shows it.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Kind and contract version, when it exports a `wasmconnect:plugin` interface.
    pub description: Option<Description>,
    /// What it needs from the host (`wasmconnect:plugin/sql@0.3.0`, `wasi:io/streams@0.2.6`).
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Whether this runtime loads it; if not, why, in words.
    pub loads: Result<(), String>,
    /// Its config keys, when it loads and describes them.
    pub spec: Option<Vec<ConfigKey>>,
}

/// One build of a plugin file: what was learned of it, its component once compiled. A
/// rebuilt file (another [`FileVersion`]) starts afresh, so nothing here outlives the build
/// it describes.
#[derive(Default)]
struct Compiled {
    version: FileVersion,
    /// Compiled on first need: describing a plugin reads its export names only.
    component: Option<Component>,
    /// What [`WasmEngine::describe`] found.
    description: Option<Description>,
    /// What [`WasmEngine::config_spec`] read.
    spec: Option<Spec>,
    /// Pre-linked, once loaded, and the plugin built from it.
    pre: Option<InstancePre<TaskState>>,
    plugin: Option<Plugin>,
}

/// What tells two builds of a plugin file apart without reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FileVersion {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl FileVersion {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileVersion {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }
}

#[derive(Clone)]
enum Plugin {
    Sink(Arc<SinkPlugin>),
    Source(Arc<SourcePlugin>),
    Transform(Arc<TransformPlugin>),
}

fn cache_key(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

fn contract_error(path: &Path, e: wasmtime::Error) -> LoadError {
    LoadError::Contract {
        path: path.to_owned(),
        message: format!("{e:#}"),
    }
}

impl WasmEngine {
    /// Builds the engine (epoch interruption on, async host calls) and starts its epoch ticker,
    /// which stops by itself when the engine is dropped.
    pub fn new() -> Result<Self, wasmtime::Error> {
        Self::build(true, None)
    }

    /// Like [`WasmEngine::new`], keeping compiled plugins in `dir` (created when missing): a
    /// plugin compiled once, by any process using the same directory, loads without compiling
    /// again until the file or the runtime changes (entries are keyed by both).
    pub fn with_compiled_cache(dir: &Path) -> Result<Self, wasmtime::Error> {
        Self::build(true, Some(dir))
    }

    /// An engine whose plugin calls cannot be interrupted (no epoch checks in the compiled
    /// code, so `limits.call_timeout_ms` does nothing). Only for measuring what interruption
    /// costs.
    #[doc(hidden)]
    pub fn uninterruptible() -> Result<Self, wasmtime::Error> {
        Self::build(false, None)
    }

    /// An engine whose plugins' sql and http calls are answered from the script in their
    /// grants (`Grants::replay`) instead of reaching any system: what `wasmconnect test`
    /// runs plugins on. Limits and traps are the normal engine's.
    pub fn replaying() -> Result<Self, wasmtime::Error> {
        let mut engine = Self::build(true, None)?;
        let mut linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        add_log(&mut linker)?;
        capability::replay::add_to_linker(&mut linker, |s: &mut TaskState| {
            capability::replay::ReplayView {
                script: s.grants.replay.as_deref(),
            }
        })?;
        engine.linker = linker;
        Ok(engine)
    }

    fn build(interruptible: bool, compiled: Option<&Path>) -> Result<Self, wasmtime::Error> {
        let no_deadline = std::env::var_os(NO_CALL_DEADLINE).is_some();
        if interruptible && no_deadline {
            tracing::warn!(
                "{NO_CALL_DEADLINE} is set: plugin calls run without a deadline \
                 (limits.call_timeout_ms does nothing); for benchmarks only"
            );
        }
        let interruptible = interruptible && !no_deadline;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(interruptible);
        // For profiling the plugins' compiled code with `perf`: writes /tmp/perf-PID.map.
        if std::env::var_os("WASMCONNECT_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = compiled {
            let mut cache = wasmtime::CacheConfig::new();
            // wasmtime wants it absolute; a relative one is taken from the working directory.
            cache.with_directory(std::path::absolute(dir)?);
            config.cache(Some(wasmtime::Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        if interruptible {
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(wasmtime::Error::from)?;
        }
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        add_log(&mut linker)?;
        capability::sql::add_to_linker(&mut linker, |s: &mut TaskState| {
            capability::sql::SqlView {
                grants: &s.grants.sql,
                held: &mut s.held,
            }
        })?;
        capability::http::add_to_linker(&mut linker, |s: &mut TaskState| {
            capability::http::HttpView {
                grants: &s.grants.http,
            }
        })?;
        Ok(WasmEngine {
            engine,
            linker,
            files: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a sink plugin, compiling it on first use. Checks that the file is a component that
    /// exports this runtime's sink interface and needs no import the runtime lacks.
    pub fn load_sink(&self, path: &Path) -> Result<Arc<SinkPlugin>, LoadError> {
        let (pre, cached) = self.load(path, "sink")?;
        let plugin = match cached {
            Some(Plugin::Sink(plugin)) => return Ok(plugin),
            _ => SinkPlugin::new(path.to_owned(), pre),
        };
        let plugin = Arc::new(plugin.map_err(|e| contract_error(path, e))?);
        self.remember(path, Plugin::Sink(plugin.clone()));
        Ok(plugin)
    }

    /// Loads a source plugin, compiling it on first use; checked as for a sink.
    pub fn load_source(&self, path: &Path) -> Result<Arc<SourcePlugin>, LoadError> {
        let (pre, cached) = self.load(path, "source")?;
        let plugin = match cached {
            Some(Plugin::Source(plugin)) => return Ok(plugin),
            _ => SourcePlugin::new(path.to_owned(), pre),
        };
        let plugin = Arc::new(plugin.map_err(|e| contract_error(path, e))?);
        self.remember(path, Plugin::Source(plugin.clone()));
        Ok(plugin)
    }

    /// Loads a transform plugin, compiling it on first use; checked as for a sink.
    pub fn load_transform(&self, path: &Path) -> Result<Arc<TransformPlugin>, LoadError> {
        let (pre, cached) = self.load(path, "transform")?;
        let plugin = match cached {
            Some(Plugin::Transform(plugin)) => return Ok(plugin),
            _ => TransformPlugin::new(path.to_owned(), pre),
        };
        let plugin = Arc::new(plugin.map_err(|e| contract_error(path, e))?);
        self.remember(path, Plugin::Transform(plugin.clone()));
        Ok(plugin)
    }

    /// What kind of plugin the file at `path` is, and for which contract version, from its
    /// export names (read once per file version, without compiling it). Does not check that
    /// it would compile or link.
    pub fn describe(&self, path: &Path) -> Result<Description, LoadError> {
        if let Some(description) = self.known(path, |f| f.description.clone()) {
            return Ok(description);
        }
        let version = FileVersion::of(path);
        // The export names, read without compiling: listing the plugins of a directory must
        // not compile each one (a Python plugin takes most of a minute in a debug build).
        let bytes = read_component(path)?;
        let Outline { exports, section } =
            outline(&bytes).map_err(|reason| LoadError::NotComponent {
                path: path.to_owned(),
                reason,
            })?;
        let kafka_connect = section
            .map(|bytes| Declared::parse(&bytes))
            .transpose()
            .map_err(|message| LoadError::Contract {
                path: path.to_owned(),
                message,
            })?;
        let package = format!("{CONTRACT_PACKAGE}/");
        let description = exports
            .iter()
            .find_map(|name| {
                let (kind, version) = name.strip_prefix(&package)?.split_once('@')?;
                Some(Description {
                    kind: kind.to_owned(),
                    version: version.to_owned(),
                    kafka_connect: kafka_connect.clone(),
                })
            })
            .ok_or_else(|| LoadError::Contract {
                path: path.to_owned(),
                message: format!("is not a wasmconnect plugin: it exports no {package}* interface"),
            })?;
        if let Some(version) = version {
            self.learn_of(path, version, |f| f.description = Some(description.clone()));
        }
        Ok(description)
    }

    /// The keys of the plugin's connector config, from its `config-spec` export (`None` when it
    /// does not describe them); read once per file version, on a fresh instance with no
    /// grants. Blocks on the current tokio runtime: call it where blocking is allowed
    /// (`spawn_blocking`, `block_in_place`).
    pub fn config_spec(&self, path: &Path) -> Result<Option<Vec<ConfigKey>>, LoadError> {
        if let Some(spec) = self.known(path, |f| f.spec.clone()) {
            return Ok(spec);
        }
        let description = self.describe(path)?;
        let (pre, _) = self.load(path, &description.kind)?;
        let spec = tokio::runtime::Handle::current()
            .block_on(spec::read(&self.engine, &pre))
            .map_err(|e| LoadError::Spec {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        self.learn(path, |f| f.spec = Some(spec.clone()));
        Ok(spec)
    }

    /// Everything `wasmconnect plugin inspect` shows about the file at `path`: what it exports
    /// and imports, whether this runtime can load it (and why not, in words) and its config
    /// spec. Fails only when the file cannot be read or is not a component that compiles.
    /// Blocks like [`WasmEngine::config_spec`].
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        let component = self.compile(path)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let description = self.describe(path).ok();
        let (loads, spec) = match &description {
            None => (
                Err(format!(
                    "is not a wasmconnect plugin: it exports no {CONTRACT_PACKAGE}/* interface"
                )),
                None,
            ),
            Some(d) => match self
                .load(path, &d.kind)
                .and_then(|_| self.config_spec(path))
            {
                Ok(spec) => (Ok(()), spec),
                Err(e) => (
                    Err(e
                        .to_string()
                        .trim_start_matches(&format!("plugin {}: ", path.display()))
                        .to_owned()),
                    None,
                ),
            },
        };
        Ok(Inspection {
            description,
            imports,
            exports,
            loads,
            spec,
        })
    }

    /// The pre-linked component at `path`, checked to export `kind`, and the plugin built from
    /// it before (if any). Compiles once per file.
    fn load(
        &self,
        path: &Path,
        kind: &str,
    ) -> Result<(InstancePre<TaskState>, Option<Plugin>), LoadError> {
        if let Some((pre, plugin)) = self.known(path, |f| Some((f.pre.clone()?, f.plugin.clone())))
        {
            check_contract(&self.engine, pre.component(), kind).map_err(|message| {
                LoadError::Contract {
                    path: path.to_owned(),
                    message,
                }
            })?;
            return Ok((pre, plugin));
        }
        let component = self.compile(path)?;
        check_contract(&self.engine, &component, kind).map_err(|message| LoadError::Contract {
            path: path.to_owned(),
            message,
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?;
        self.learn(path, |f| f.pre = Some(pre.clone()));
        Ok((pre, None))
    }

    fn remember(&self, path: &Path, plugin: Plugin) {
        self.learn(path, |f| f.plugin = Some(plugin));
    }

    /// What `read` finds in what is known of the file at `path`, if it was compiled as the
    /// file is now.
    fn known<T>(&self, path: &Path, read: impl FnOnce(&Compiled) -> Option<T>) -> Option<T> {
        let version = FileVersion::of(path)?;
        let files = self.files.lock().expect("files lock");
        files
            .get(&cache_key(path))
            .filter(|f| f.version == version)
            .and_then(read)
    }

    /// Adds to what is known of the file at `path` as it is now.
    fn learn(&self, path: &Path, write: impl FnOnce(&mut Compiled)) {
        if let Some(version) = FileVersion::of(path) {
            self.learn_of(path, version, write);
        }
    }

    /// Adds to what is known of the build `version` of the file at `path` (read before what
    /// is added was taken from the file): what was learned of another build is dropped.
    fn learn_of(&self, path: &Path, version: FileVersion, write: impl FnOnce(&mut Compiled)) {
        let mut files = self.files.lock().expect("files lock");
        let f = files.entry(cache_key(path)).or_default();
        if f.version != version {
            *f = Compiled {
                version,
                ..Compiled::default()
            };
        }
        write(f);
    }

    /// The component at `path`, compiled once per file version (inspecting and loading a
    /// plugin compile it once between them).
    fn compile(&self, path: &Path) -> Result<Component, LoadError> {
        if let Some(component) = self.known(path, |f| f.component.clone()) {
            return Ok(component);
        }
        let version = FileVersion::of(path);
        let component = self.compile_file(path)?;
        if let Some(version) = version {
            self.learn_of(path, version, |f| f.component = Some(component.clone()));
        }
        Ok(component)
    }

    fn compile_file(&self, path: &Path) -> Result<Component, LoadError> {
        let bytes = read_component(path)?;
        Component::new(&self.engine, &bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })
    }
}

/// The bytes of the component at `path`, or why it is not one.
fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let not_component = |reason: &str| LoadError::NotComponent {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not_component("is not a WebAssembly file"));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(not_component(
            "is a core WebAssembly module, not a component: build the plugin with \
             `cargo build --target wasm32-wasip2`",
        ));
    }
    Ok(bytes)
}

/// The names of the instances a component exports at its top level (`wasmconnect:plugin/sink@0.3.0`),
/// read from its sections without compiling or validating it.
/// What a component's bytes say without compiling it: the names of the instances it
/// exports, and its Kafka Connect declaration section (at any depth: the SDK puts it in the
/// core module).
struct Outline {
    exports: Vec<String>,
    section: Option<Vec<u8>>,
}

fn outline(bytes: &[u8]) -> Result<Outline, String> {
    use wasmparser::{ComponentExternalKind, Parser, Payload};
    let mut depth = 0usize;
    let mut outline = Outline {
        exports: Vec::new(),
        section: None,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("cannot be read: {e}"))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let export = export.map_err(|e| format!("cannot be read: {e}"))?;
                    if export.kind == ComponentExternalKind::Instance {
                        outline.exports.push(export.name.name.to_owned());
                    }
                }
            }
            Payload::CustomSection(section) if section.name() == KAFKA_CONNECT_SECTION => {
                outline.section = Some(section.data().to_vec());
            }
            _ => {}
        }
    }
    Ok(outline)
}

/// Binds `wasmconnect:plugin/log`, which every engine offers as it is.
fn add_log(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    capability::log::add_to_linker(linker, |s: &mut TaskState| capability::log::LogView {
        stream: &s.log,
    })
}

/// Checks that `component` exports `wasmconnect:plugin/<kind>` at this runtime's version, and
/// explains in words what it is instead when it does not.
/// The capabilities a transform may not import: it is a pure function of its records (re-run
/// on retries, so a side effect would repeat), and its world gives it the log alone.
const IMPURE_IMPORTS: &[&str] = &["sql", "http"];

/// Whether `component` is a `kind` plugin of this contract: it exports the interface
/// ([`check_exports`]) and, for a transform, imports no capability a transform may not have.
fn check_contract(engine: &Engine, component: &Component, kind: &str) -> Result<(), String> {
    check_exports(engine, component, kind)?;
    if kind != "transform" {
        return Ok(());
    }
    let package = format!("{CONTRACT_PACKAGE}/");
    let impure = component
        .component_type()
        .imports(engine)
        .find_map(|(name, _)| {
            let interface = name.strip_prefix(&package)?.split('@').next()?;
            IMPURE_IMPORTS.contains(&interface).then(|| name.to_owned())
        });
    match impure {
        None => Ok(()),
        Some(import) => Err(format!(
            "is a transform that imports {import}: a transform gets the log alone (it must be \
             a pure function of its records, as it is re-run on retries); query or call out \
             from the sink or source instead"
        )),
    }
}

fn check_exports(engine: &Engine, component: &Component, kind: &str) -> Result<(), String> {
    let wanted = format!("{CONTRACT_PACKAGE}/{kind}@{CONTRACT_VERSION}");
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.contains(&wanted) {
        return Ok(());
    }
    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with(&format!("{CONTRACT_PACKAGE}/")))
        .collect();
    if let Some(other) = ours
        .iter()
        .find(|e| e.starts_with(&format!("{CONTRACT_PACKAGE}/{kind}@")))
    {
        let version = other.rsplit('@').next().unwrap_or("?");
        return Err(format!(
            "was built for contract {CONTRACT_PACKAGE}@{version}, but this runtime implements \
             {CONTRACT_PACKAGE}@{CONTRACT_VERSION}: rebuild the plugin against a matching \
             wasmconnect-sdk"
        ));
    }
    if let Some(other) = ours.first() {
        let other_kind = other
            .trim_start_matches(&format!("{CONTRACT_PACKAGE}/"))
            .split('@')
            .next()
            .unwrap_or("?");
        return Err(format!(
            "is a {other_kind} plugin (exports {other}), but is configured as a {kind}"
        ));
    }
    Err(format!(
        "is not a wasmconnect {kind} plugin: it exports no {wanted} (exports: {})",
        if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        }
    ))
}
