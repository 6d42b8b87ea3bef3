//! The approvers' report (issue #21): `airgap bundle` writes it beside the bundle, `airgap
//! inspect --report` makes it from any bundle. The HTML is rendered by real headless Chromium
//! and read back from its DOM; hostile names and commands stay text in HTML and Markdown; a
//! delta's report lists what changed; an encrypted bundle's report; the Markdown pinned.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_archive::format::manifest::{PackageRecord, StepRecord};
use airgap_archive::format::model::{InstallStep, Package, PrefixFile, PrefixMode};
use airgap_archive::text::escape;
use airgap_archive::{Entry, PlanOptions};
use airgap_tests::archive::{input, plan, unpacker, write};
use airgap_tests::{airgap, run, tempdir};

/// A package of `kind` from `origin`.
fn package(name: &str, version: &str, kind: &str, origin: &str) -> PackageRecord {
    let mut p = Package {
        id: format!("{kind}:{name}-{version}"),
        name: name.into(),
        version: version.into(),
        kind: kind.into(),
        origin: origin.into(),
        ..Package::default()
    };
    if kind == "wheel" {
        p.license = Some("MIT".into());
        p.sha256 = Some("ab".repeat(32));
    }
    PackageRecord {
        plugin: "test".into(),
        package: p,
    }
}

/// The hostile strings: markup, a table pipe, backticks, a newline, a leading heading.
const HOSTILE: [&str; 4] = [
    "<script>alert('x')</script>",
    "pipe|name",
    "back`tick`",
    "new\nline",
];

/// A bundle whose manifest has ordinary, grafted and hostile packages and `Run` steps whose
/// program and arguments are hostile too, written by the archive's own writer.
fn hostile_bundle(dir: &Path) -> PathBuf {
    let tree = dir.join("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f"), b"/build/env/bin\n").unwrap();
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("rep");
    inp.packages = vec![
        package("numpy", "1.26.4", "wheel", "https://pypi.org/simple"),
        package(
            "libgfortran.so.5",
            "5",
            "system",
            "/usr/lib/x86_64-linux-gnu/libgfortran.so.5",
        ),
    ];
    inp.packages.extend(
        HOSTILE
            .iter()
            .map(|h| package(h, "1|0", "acme", "# heading")),
    );
    inp.install_steps = vec![
        StepRecord {
            plugin: "test".into(),
            step: InstallStep::RewritePrefix {
                old_prefix: "/build/env".into(),
                root: "data".into(),
                files: vec![PrefixFile::new("data/f", PrefixMode::Text)],
            },
        },
        StepRecord {
            plugin: "test".into(),
            step: InstallStep::Run {
                description: "compile <b>bytecode</b>".into(),
                program: "sh".into(),
                args: vec![
                    "-c".into(),
                    "echo '<script>|`x`'\nrm -rf ~".into(),
                    String::new(),
                ],
                env: [("PYTHONHASHSEED".to_string(), "0".to_string())].into(),
            },
        },
        StepRecord {
            plugin: "test".into(),
            step: InstallStep::Run {
                description: "second".into(),
                program: "{dest}/bin/x|y".into(),
                args: vec!["`a`".into()],
                env: Default::default(),
            },
        },
    ];
    let out = dir.join("rep.tar.gz");
    write(&p, inp, &out, Some(unpacker()));
    out
}

/// Headless Chromium, which setup installs (xtask/setup/apt.txt); `None` after failing the
/// test with the reason when it is missing.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file());
    if found.is_none() {
        airgap_tests::python::skip("chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Chromium's DOM of `html` after it loaded it, and a screenshot at `png`.
fn render(chromium: &Path, html: &Path, png: &Path) -> String {
    let profile = tempdir();
    let common = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new(chromium);
    common(&mut dump);
    let done = run(dump.arg("--dump-dom").arg(html)).success();
    let mut shot = Command::new(chromium);
    common(&mut shot);
    fs::create_dir_all(png.parent().unwrap()).unwrap();
    let _ = fs::remove_file(png);
    run(shot
        .arg("--window-size=1280,2400")
        .arg(format!("--screenshot={}", png.display()))
        .arg(html))
    .success();
    assert!(
        fs::metadata(png).map(|m| m.len() > 0).unwrap_or(false),
        "no screenshot at {}",
        png.display()
    );
    done.stdout
}

/// The text of each cell of each body row of the table `id` in serialized `dom`, and of each
/// `<li>` in a cell (the arguments of a command), entities decoded.
fn rows(dom: &str, id: &str) -> Vec<Vec<(String, Vec<String>)>> {
    let start = dom
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id} in {dom}"));
    let table = &dom[start..];
    let table = &table[..table.find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
                    let items = cell.split("<li>").skip(1).map(text).collect();
                    (text(cell), items)
                })
                .collect()
        })
        .collect()
}

/// A fragment's text: tags dropped, entities decoded.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[test]
fn chromium_shows_every_package_inspect_lists_and_the_exact_commands() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempdir();
    let bundle = hostile_bundle(tmp.path());
    let html = tmp.path().join("rep.html");
    let done = run(airgap()
        .arg("inspect")
        .arg(&bundle)
        .arg("--report")
        .arg(&html))
    .success();
    assert!(done.stderr.contains("Report"), "{}", done.stderr);
    let png = airgap_tests::target_dir().join("test-artifacts/report.png");
    let dom = render(&chromium, &html, &png);

    // No markup from the bundle became an element: the document has no script at all.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<b>bytecode"), "{dom}");

    let json = run(airgap().args(["inspect", "--json"]).arg(&bundle)).success();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let listed: Vec<(String, String)> = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = &p["package"];
            (
                escape(p["name"].as_str().unwrap()),
                escape(p["version"].as_str().unwrap()),
            )
        })
        .collect();
    let shown: Vec<(String, String)> = rows(&dom, "packages")
        .into_iter()
        .map(|r| (r[0].0.clone(), r[1].0.clone()))
        .collect();
    assert_eq!(shown, listed);
    assert_eq!(listed.len(), 6);
    // Licence never guessed; the grafted library and where it came from.
    let packages = rows(&dom, "packages");
    assert_eq!(packages[0][4].0, "MIT");
    assert!(packages[1..].iter().all(|r| r[4].0 == "unknown"));
    let libs = rows(&dom, "system-libraries");
    assert_eq!(libs.len(), 1);
    assert_eq!(libs[0][2].0, "/usr/lib/x86_64-linux-gnu/libgfortran.so.5");

    // The commands: the exact program and every argument of each Run step, in order.
    let commands = rows(&dom, "commands");
    let runs: Vec<(String, Vec<String>)> = json["install_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["step"])
        .filter(|s| s["step"] == "run")
        .map(|s| {
            (
                escape(s["program"].as_str().unwrap()),
                s["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| escape(a.as_str().unwrap()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(commands.len(), 2);
    for (row, (program, args)) in commands.iter().zip(&runs) {
        assert_eq!(&row[3].0, program);
        assert_eq!(&row[4].1, args);
    }
    assert_eq!(commands[0][5].0, "PYTHONHASHSEED=0");
    let rewrites = rows(&dom, "prefix-rewrites");
    assert_eq!(rewrites[0][0].0, "DEST/data");
    assert_eq!(rewrites[0][2].0, "1");
    assert!(dom.contains("id=\"verdict\""), "{dom}");
}

/// Markdown cells split on the pipes that are not escaped.
fn md_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = cells.last_mut().unwrap();
                last.push(c);
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

#[test]
fn hostile_names_and_commands_stay_text_in_markdown() {
    let tmp = tempdir();
    let bundle = hostile_bundle(tmp.path());
    let md = run(airgap().arg("inspect").arg(&bundle).args(["--report", "-"]))
        .success()
        .stdout;
    let mut header: Option<usize> = None;
    for line in md.lines() {
        // Every backtick and angle bracket from the bundle is escaped.
        for (i, c) in line.char_indices() {
            if "`<>".contains(c) {
                assert!(line[..i].ends_with('\\'), "unescaped {c:?} in {line:?}");
            }
        }
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        // Each row of a table has as many cells as its header: no pipe and no newline got
        // through to end a cell or a row early.
        let cells = md_cells(line).len();
        assert_eq!(cells, *header.get_or_insert(cells), "{line}");
    }
    let table = |title: &str| -> Vec<Vec<String>> {
        let at = md
            .find(title)
            .unwrap_or_else(|| panic!("no {title} in {md}"));
        md[at..]
            .lines()
            .skip(4)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                md_cells(l)
                    .into_iter()
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    };
    let packages = table("## Packages");
    assert_eq!(packages.len(), 6, "{md}");
    for row in &packages {
        assert_eq!(row.len(), 10, "{row:?}");
    }
    let names: Vec<&str> = packages.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        names,
        [
            "numpy",
            "libgfortran.so.5",
            "\\<script\\>alert('x')\\</script\\>",
            "pipe\\|name",
            "back\\`tick\\`",
            "new\\\\nline",
        ]
    );
    assert!(
        packages[2][4].starts_with("\\# heading"),
        "{:?}",
        packages[2]
    );
    let commands = table("## Commands");
    assert_eq!(commands.len(), 2, "{md}");
    for part in ["sh -c", "\\<script\\>\\|\\`x\\`", "\\\\nrm", "''"] {
        assert!(
            commands[0][4].contains(part),
            "{part} in {:?}",
            commands[0][4]
        );
    }
    assert_eq!(commands[1][4], "'{dest}/bin/x\\|y' '\\`a\\`'");

    // The HTML of the same bundle, as written: markup only of its own.
    let html = tmp.path().join("rep.html");
    run(airgap()
        .arg("inspect")
        .arg(&bundle)
        .arg("--report")
        .arg(&html))
    .success();
    let html = fs::read_to_string(&html).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("new\\nline"));
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "self-contained: {html}"
    );
}

/// A project of the acme-store plugin: an index of `artifacts` (name, version), each a file.
fn acme(dir: &Path, artifacts: &[(&str, &str)], extra: &str) {
    let store = dir.join("store");
    fs::create_dir_all(&store).unwrap();
    let mut index = String::new();
    for (name, version) in artifacts {
        let file = format!("{name}-{version}.bin");
        fs::write(
            store.join(&file),
            format!("{name} {version}\n").repeat(1000),
        )
        .unwrap();
        index.push_str(&format!(
            "[[artifact]]\nname = \"{name}\"\nversion = \"{version}\"\npath = \"{file}\"\nlicense = \"Apache-2.0\"\n\n"
        ));
    }
    fs::write(store.join("index.toml"), index).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        format!("[bundle]\nname = \"acme\"\n\n[sources.acme-store]\nindex = \"store/index.toml\"\n{extra}"),
    )
    .unwrap();
}

fn bundle_cmd(dir: &Path) -> Command {
    let mut cmd = airgap_tests::with_build_plugins(airgap());
    cmd.current_dir(dir)
        .args(["bundle", "-c", "airgap.toml", "--unpacker"])
        .arg(unpacker());
    cmd
}

#[test]
fn a_delta_report_lists_what_changed_since_its_base() {
    let tmp = tempdir();
    let dir = tmp.path();
    acme(dir, &[("alpha", "1.0"), ("beta", "1.0")], "");
    let done = run(bundle_cmd(dir).args(["-o", "v1.tar.gz"])).success();
    assert!(
        done.stderr
            .contains("v1.tar.gz.report.html (and v1.tar.gz.report.md)"),
        "{}",
        done.stderr
    );
    assert!(dir.join("v1.tar.gz.report.html").is_file());
    acme(dir, &[("alpha", "2.0"), ("gamma", "1.0")], "");
    run(bundle_cmd(dir).args(["-o", "v2-delta.tar.gz", "--since", "v1.tar.gz"])).success();
    let written = fs::read_to_string(dir.join("v2-delta.tar.gz.report.md")).unwrap();
    let inspected = run(airgap()
        .arg("inspect")
        .arg(dir.join("v2-delta.tar.gz"))
        .args(["--report", "-", "--since"])
        .arg(dir.join("v1.tar.gz")))
    .success()
    .stdout;
    for md in [&written, &inspected] {
        assert!(md.contains("## Changes since the base"), "{md}");
        assert!(md.contains("A delta of acme"), "{md}");
        assert!(md.contains("| added | gamma | acme |  | 1.0 |"), "{md}");
        assert!(md.contains("| removed | beta | acme | 1.0 |  |"), "{md}");
        assert!(
            md.contains("| changed | alpha | acme | 1.0 | 2.0 |"),
            "{md}"
        );
    }
    // Written with the bundle, it has the plan's verdict; from the delta alone, none.
    assert!(written.contains("**Check passed:**"), "{written}");
    assert!(inspected.contains("**Check not checked:**"), "{inspected}");
    // Without the base, the delta's report still names it.
    let alone = run(airgap()
        .arg("inspect")
        .arg(dir.join("v2-delta.tar.gz"))
        .args(["--report", "-"]))
    .success()
    .stdout;
    assert!(
        alone.contains("The base's packages were not given"),
        "{alone}"
    );
}

#[test]
fn no_report_skips_it_and_a_later_bundle_never_takes_the_report_as_input() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/a.txt"), "a\n").unwrap();
    // The output is inside the files source: the bundle's own files are left out of it.
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"own\"\n\n[sources.files]\npaths = [\"data/\"]\n",
    )
    .unwrap();
    run(bundle_cmd(dir).args(["-o", "data/own.tar.gz"])).success();
    assert!(dir.join("data/own.tar.gz.report.html").is_file());
    assert!(dir.join("data/own.tar.gz.report.md").is_file());
    run(bundle_cmd(dir).args(["-o", "data/own.tar.gz"])).success();
    let json = run(airgap()
        .args(["inspect", "--json", "--largest", "100"])
        .arg(dir.join("data/own.tar.gz")))
    .success()
    .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let paths: Vec<&str> = json["largest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            ".airgap/airgap-unpack",
            ".airgap/sbom.cdx.json",
            "unpack",
            "data/a.txt"
        ]
    );

    let done = run(bundle_cmd(dir).args(["-o", "other.tar.gz", "--no-report"])).success();
    assert!(!done.stderr.contains("Report"), "{}", done.stderr);
    assert!(!dir.join("other.tar.gz.report.html").exists());
    assert!(!dir.join("other.tar.gz.report.md").exists());
}

#[test]
fn an_encrypted_bundle_s_report_on_stdout() {
    let tmp = tempdir();
    let dir = tmp.path();
    acme(dir, &[("alpha", "1.0")], "");
    fs::write(dir.join("pass.txt"), "correct horse\n").unwrap();
    let (_, _, secret, public) = crate::seal_support::keygen(&dir.join("keys"), "site");
    let done = run(bundle_cmd(dir)
        .args(["--passphrase-file", "pass.txt", "--sign"])
        .arg(&secret))
    .success();
    assert!(
        done.stderr.contains("acme.tar.gz.age.report.html"),
        "{}",
        done.stderr
    );
    let written = fs::read_to_string(dir.join("acme.tar.gz.age.report.md")).unwrap();
    assert!(
        written.contains("| encrypted | with a passphrase |"),
        "{written}"
    );
    let md = run(airgap()
        .arg("inspect")
        .arg(dir.join("acme.tar.gz.age"))
        .args(["--report", "-", "--passphrase-file"])
        .arg(dir.join("pass.txt"))
        .arg("--trusted-key")
        .arg(&public))
    .success()
    .stdout;
    // The signer: the key that signed it, in both reports.
    let key = written
        .lines()
        .find_map(|l| l.strip_prefix("| signed by | minisign key "))
        .unwrap_or_else(|| panic!("no signer in {written}"));
    assert!(
        md.contains(&format!("| signed by | minisign key {key}")),
        "{md}"
    );
    assert!(md.starts_with("# Bundle acme\n"), "{md}");
    assert!(md.contains("**Check passed:**"), "{md}");
    assert!(md.contains("| encrypted | age |"), "{md}");
    assert!(md.contains("| alpha | 1.0 | acme |"), "{md}");
    assert!(md.contains("| Apache-2.0 |"), "{md}");
    let sha = airgap_tests::archive::sha256_hex(&fs::read(dir.join("acme.tar.gz.age")).unwrap());
    assert!(md.contains(&format!("| sha256 | {sha} |")), "{md}");
    // Without the passphrase it is refused, as inspect is.
    let e = run(airgap()
        .arg("inspect")
        .arg(dir.join("acme.tar.gz.age"))
        .args(["--report", "-"]))
    .failure();
    assert!(e.stderr.contains("is encrypted (age)"), "{}", e.stderr);
}

#[test]
fn the_markdown_of_a_small_bundle() {
    let tmp = tempdir();
    let bundle = hostile_bundle(tmp.path());
    let md = run(airgap().arg("inspect").arg(&bundle).args(["--report", "-"]))
        .success()
        .stdout;
    let filters = crate::cli_output::filters(tmp.path());
    let refs: Vec<(&str, &str)> = filters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    insta::with_settings!({filters => refs, prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("report_markdown", md);
    });
}
