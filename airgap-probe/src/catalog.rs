//! The fixed, versioned catalog of system libraries the code carries one presence bit for.
//!
//! A code cannot name every library of a machine, so it answers for the libraries Python
//! environments need most from the system: the ones airgap would otherwise graft. The list
//! comes from the ELF closures of real environments: the extension modules of a pyenv CPython
//! (3.6 to 3.13, `lib-dynload`: libssl/libcrypto, libsqlite3, libffi, libbz2, liblzma, libuuid,
//! libreadline, ncurses, gdbm, libnsl/libtirpc, libcrypt, the krb5 stack of `_hashlib`'s
//! OpenSSL builds, Tcl/Tk and the X libraries of `_tkinter`), the wheels and conda packages
//! of the syslibs and conformance tests (libgomp, libgfortran, libquadmath, libpq, libodbc,
//! libzstd), and the manylinux base set (which a real target may still lack).
//!
//! Never reorder or remove an entry of a published version: a code's bits are positions in
//! the list of its version. A new list is a new [`CATALOG`] version with its own table.

/// The catalog version new codes are written with.
pub const CATALOG: u32 = 1;

/// Catalog 1, in bit order, each with why it is there.
const CATALOG_1: &[(&str, &str)] = &[
    (
        "libstdc++.so.6",
        "C++ extensions; manylinux assumes it, minimal images may lack it",
    ),
    ("libgcc_s.so.1", "C++ and Fortran code unwinding"),
    ("libz.so.1", "zlib module, numpy/pillow wheels"),
    ("libexpat.so.1", "pyexpat"),
    ("libssl.so.3", "_ssl of Pythons built against OpenSSL 3"),
    ("libcrypto.so.3", "_hashlib, cryptography, psycopg"),
    ("libssl.so.1.1", "_ssl of Pythons built against OpenSSL 1.1"),
    ("libcrypto.so.1.1", "_hashlib with OpenSSL 1.1"),
    ("libsqlite3.so.0", "_sqlite3"),
    ("libffi.so.8", "_ctypes (libffi 3.4)"),
    ("libffi.so.7", "_ctypes (libffi 3.3)"),
    ("libffi.so.6", "_ctypes (libffi 3.2, RHEL 7/8)"),
    ("libbz2.so.1.0", "_bz2 (Debian soname)"),
    ("libbz2.so.1", "_bz2 (RHEL soname)"),
    ("liblzma.so.5", "_lzma"),
    ("libuuid.so.1", "_uuid"),
    ("libreadline.so.8", "readline"),
    ("libreadline.so.7", "readline on older systems"),
    ("libtinfo.so.6", "readline, _curses"),
    ("libncursesw.so.6", "_curses"),
    ("libpanelw.so.6", "_curses_panel"),
    ("libgdbm.so.6", "_gdbm"),
    ("libgdbm_compat.so.4", "_dbm"),
    ("libnsl.so.2", "nis (Python < 3.13)"),
    ("libtirpc.so.3", "nis, via libnsl.so.2"),
    (
        "libcrypt.so.1",
        "_crypt (Python < 3.13); its build-machine copy sets a high glibc floor",
    ),
    ("libmpdec.so.3", "_decimal of distribution Pythons"),
    (
        "libgssapi_krb5.so.2",
        "krb5 stack of OpenSSL-linked modules and libpq",
    ),
    ("libkrb5.so.3", "krb5"),
    ("libk5crypto.so.3", "krb5"),
    ("libcom_err.so.2", "krb5"),
    ("libkrb5support.so.0", "krb5"),
    ("libkeyutils.so.1", "krb5"),
    ("libtcl8.6.so", "_tkinter"),
    ("libtk8.6.so", "_tkinter"),
    ("libX11.so.6", "_tkinter, matplotlib backends"),
    ("libXext.so.6", "_tkinter, opencv"),
    ("libXrender.so.1", "_tkinter (Xft)"),
    ("libXft.so.2", "_tkinter"),
    ("libXss.so.1", "_tkinter"),
    ("libfontconfig.so.1", "_tkinter, matplotlib"),
    ("libfreetype.so.6", "_tkinter, matplotlib, pillow"),
    ("libpng16.so.16", "_tkinter, pillow"),
    ("libxcb.so.1", "X client libraries"),
    ("libSM.so.6", "opencv-python, manylinux base set"),
    ("libICE.so.6", "opencv-python, manylinux base set"),
    (
        "libGL.so.1",
        "opencv-python, pyqt; a driver library, never bundled",
    ),
    ("libglib-2.0.so.0", "opencv-python, gobject bindings"),
    ("libgthread-2.0.so.0", "opencv-python"),
    (
        "libgomp.so.1",
        "OpenMP: scikit-learn, torch, conda numpy/scipy",
    ),
    (
        "libgfortran.so.5",
        "conda and distribution scipy/numpy builds",
    ),
    ("libquadmath.so.0", "libgfortran"),
    ("libatomic.so.1", "manylinux base set, some C++ wheels"),
    ("libopenblas.so.0", "distribution numpy/scipy"),
    ("libpq.so.5", "psycopg2 built from source, conda libpq"),
    ("libodbc.so.2", "pyodbc"),
    ("libmariadb.so.3", "mysqlclient"),
    ("libxml2.so.2", "lxml built against the system"),
    ("libxslt.so.1", "lxml"),
    (
        "libyaml-0.so.2",
        "PyYAML's C loader built against the system",
    ),
    ("libzstd.so.1", "zstandard, conda packages, libarchive"),
    ("liblz4.so.1", "lz4, conda packages"),
    ("libjpeg.so.62", "pillow built against the system"),
    ("libnuma.so.1", "CUDA wheels (NCCL), torch"),
];

/// The sonames of catalog `version`, in bit order; `None` for a version this build does not
/// know (a code from a newer airgap).
pub fn catalog(version: u32) -> Option<Vec<&'static str>> {
    match version {
        1 => Some(CATALOG_1.iter().map(|(name, _)| *name).collect()),
        _ => None,
    }
}

/// Catalog `version` with the reason of each entry (for the docs and `--script`).
pub fn catalog_with_reasons(version: u32) -> Option<&'static [(&'static str, &'static str)]> {
    match version {
        1 => Some(CATALOG_1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_sonames() {
        let names = catalog(CATALOG).expect("current catalog");
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            assert!(n.starts_with("lib") && n.contains(".so"), "{n}");
            assert!(seen.insert(*n), "{n} twice");
        }
        assert!(catalog(CATALOG + 1).is_none());
    }
}
