//! The `activate` script written at the environment's root in the bundle.

/// What the script exports besides `PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `CONDA_PREFIX`, `CONDA_DEFAULT_ENV`.
    Conda,
    /// `VIRTUAL_ENV`.
    Venv,
    /// Only `PATH`.
    Plain,
}

/// The script. It finds its own directory in bash and zsh; in other shells it falls back to
/// `fallback`, an absolute path the archive engine rewrites at unpack like any other prefix.
pub fn script(flavour: Flavour, fallback: &str) -> String {
    let export = match flavour {
        Flavour::Conda => {
            "export CONDA_PREFIX=\"$_airgap_env\"\nexport CONDA_DEFAULT_ENV=\"$_airgap_env\"\n"
        }
        Flavour::Venv => "export VIRTUAL_ENV=\"$_airgap_env\"\n",
        Flavour::Plain => "",
    };
    let unset = match flavour {
        Flavour::Conda => "    unset CONDA_PREFIX CONDA_DEFAULT_ENV\n",
        Flavour::Venv => "    unset VIRTUAL_ENV\n",
        Flavour::Plain => "",
    };
    let fallback = fallback.replace('\'', "'\\''");
    format!(
        r#"# Written by airgap. Use it with: . /path/to/this/activate   (sh, bash, zsh)
# Undo with: deactivate
_airgap_env=''
if [ -n "${{BASH_VERSION:-}}" ]; then
    _airgap_env=$(cd -- "$(dirname -- "${{BASH_SOURCE[0]}}")" && pwd -P)
elif [ -n "${{ZSH_VERSION:-}}" ]; then
    eval '_airgap_env=$(cd -- "$(dirname -- "${{(%):-%x}}")" && pwd -P)'
fi
if [ -z "$_airgap_env" ] || [ ! -d "$_airgap_env/bin" ]; then
    # Other shells cannot tell where a sourced file is: use the path written at unpack.
    _airgap_env='{fallback}'
fi
if command -v deactivate >/dev/null 2>&1; then
    deactivate
fi
_AIRGAP_OLD_PATH="$PATH"
export PATH="$_airgap_env/bin:$PATH"
{export}if [ -n "${{PYTHONHOME:-}}" ]; then
    _AIRGAP_OLD_PYTHONHOME="$PYTHONHOME"
    unset PYTHONHOME
fi
deactivate () {{
    PATH="$_AIRGAP_OLD_PATH"
    export PATH
    unset _AIRGAP_OLD_PATH
{unset}    if [ -n "${{_AIRGAP_OLD_PYTHONHOME:-}}" ]; then
        PYTHONHOME="$_AIRGAP_OLD_PYTHONHOME"
        export PYTHONHOME
        unset _AIRGAP_OLD_PYTHONHOME
    fi
    unset -f deactivate
    hash -r 2>/dev/null || true
}}
unset _airgap_env
hash -r 2>/dev/null || true
"#
    )
}
