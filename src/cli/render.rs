//! `nbforge render`: render a notebook as a worksheet page, optionally with parameters,
//! and optionally write the parameterized notebook for `jupyter execute` or papermill.

use crate::worksheet::{Notebook, RenderOptions, parameterize, parameters, render, validate};
use anyhow::Context as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nbforge render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The notebook (.ipynb) to render.
    pub notebook: PathBuf,
    /// Set a parameter of the `parameters` cell (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Write the HTML page here (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "OUT.html")]
    pub output: Option<PathBuf>,
    /// Write the parameterized notebook (with its `injected-parameters` cell) here.
    #[arg(long = "notebook-out", value_name = "OUT.ipynb")]
    pub notebook_out: Option<PathBuf>,
    /// Show code cells' source (for developers).
    #[arg(long)]
    pub show_code: bool,
    /// Show error tracebacks.
    #[arg(long)]
    pub show_traceback: bool,
}

/// Run `nbforge render`. Bad parameters are reported on standard error, one line each
/// naming the parameter, with exit code 2; unreadable notebooks are errors.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let path = &args.notebook;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let nb = Notebook::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;

    let mut form = HashMap::new();
    let mut bad = Vec::new();
    for pair in &args.params {
        match pair.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                form.insert(name.trim().to_string(), value.to_string());
            }
            _ => bad.push(format!("-p {pair}: expected NAME=VALUE")),
        }
    }
    let params = parameters(&nb);
    let values = match validate(&params, &form) {
        Ok(v) => v,
        Err(errors) => {
            bad.extend(errors.iter().map(ToString::to_string));
            Default::default()
        }
    };
    if !bad.is_empty() {
        let mut stderr = std::io::stderr().lock();
        for line in &bad {
            writeln!(stderr, "error: {line}")?;
        }
        return Ok(ExitCode::from(2));
    }

    let nb = if values.is_empty() && args.notebook_out.is_none() {
        nb
    } else {
        parameterize(&nb, &values)
    };
    if let Some(out) = &args.notebook_out {
        std::fs::write(out, nb.to_json_pretty())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }

    let options = RenderOptions {
        show_code: args.show_code,
        show_traceback: args.show_traceback,
    };
    let rendered = render(&nb, &options);
    let title = rendered.title.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Worksheet".into())
    });
    let page = crate::web::Templates::new().standalone(&title, &values, rendered.body_html)?;
    match &args.output {
        Some(out) => {
            std::fs::write(out, page).with_context(|| format!("cannot write {}", out.display()))?
        }
        None => std::io::stdout().lock().write_all(page.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
