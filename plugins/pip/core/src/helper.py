# Helper run by the airgap pip plugin with a Python of the build machine.
# Must run on Python 3.5+ (the bundled environment may be old): no f-strings.
import json
import sys


def installed():
    """Distributions installed in this interpreter, as pip freeze sees them."""
    out = []
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            name = dist.metadata["Name"]
            if not name:
                continue
            editable = False
            try:
                direct = dist.read_text("direct_url.json")
                if direct:
                    editable = bool(json.loads(direct).get("dir_info", {}).get("editable"))
            except Exception:
                pass
            installer = (dist.read_text("INSTALLER") or "").strip()
            out.append({"name": name, "version": dist.version,
                        "editable": editable, "installer": installer})
    except ImportError:
        import pkg_resources

        for dist in pkg_resources.working_set:
            installer = ""
            try:
                if dist.has_metadata("INSTALLER"):
                    installer = dist.get_metadata("INSTALLER").strip()
            except Exception:
                pass
            editable = dist.precedence == pkg_resources.DEVELOP_DIST
            out.append({"name": dist.project_name, "version": dist.version,
                        "editable": editable, "installer": installer})
    json.dump(out, sys.stdout)


def select(requirement, versions):
    """The newest of `versions` that satisfies `requirement` (pip's vendored packaging)."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version, InvalidVersion
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version, InvalidVersion
    req = Requirement(requirement)
    good = []
    for v in json.loads(versions):
        try:
            good.append(Version(v))
        except InvalidVersion:
            pass
    allowed = list(req.specifier.filter(good, prereleases=None))
    if not allowed:
        allowed = list(req.specifier.filter(good, prereleases=True))
    json.dump({"name": req.name, "url": req.url,
               "version": str(max(allowed)) if allowed else None}, sys.stdout)


def extract(wheel, dest):
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "installed":
        installed()
    elif command == "select":
        select(sys.argv[2], sys.argv[3])
    elif command == "extract":
        extract(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + command)
