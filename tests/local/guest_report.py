"""Run INSIDE the test L1 after cloud-init finished: one ``NESTCLOUD-TEST-REPORT {json}`` line
on /dev/console saying what cloud-init did (the real-boot test reads it from the serial log).

Shipped by tests/local/test_real_boot.py inside the user's shell part; python3 and PyYAML are
there because cloud-init needs them. Reports:
- result.json and ``cloud-init status --long`` (errors cloud-init itself counted),
- every WARNING/ERROR/CRITICAL line in /var/log/cloud-init.log, and each traceback's
  exception line,
- each config module's outcome (the ``finish: <stage>/config-<module>: SUCCESS|FAIL`` events),
- the slowest cloud-init steps (``cloud-init analyze blame``),
- the modules our merged cloud-config activates, from cloud-init's own module metadata
  (``activate_by_schema_keys``) for the keys of /var/lib/cloud/instance/cloud-config.txt.
"""

import importlib
import json
import pkgutil
import re
import subprocess

LOG = "/var/log/cloud-init.log"


def problems(lines):
    """WARNING/ERROR/CRITICAL lines, and each traceback as its exception line."""
    found = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.search(r"\[(WARNING|ERROR|CRITICAL)\]", line):
            found.append(line)
        elif line.startswith("Traceback"):
            i += 1
            while i < len(lines) and lines[i].startswith(" "):
                i += 1
            found.append("Traceback: " + (lines[i] if i < len(lines) else "(cut off)"))
        i += 1
    return found


def main():
    status = subprocess.run(["cloud-init", "status", "--wait", "--long"],
                            capture_output=True, text=True)
    out = {"status_rc": status.returncode, "status_long": status.stdout.strip()}
    # Where the boot's cloud-init time went (slowest first): for docs/local-boot.md.
    blame = subprocess.run(["cloud-init", "analyze", "blame"], capture_output=True, text=True)
    out["blame"] = [line.strip() for line in blame.stdout.splitlines() if "s (" in line][:12]
    with open("/run/cloud-init/result.json") as fh:
        out["result"] = json.load(fh)
    with open(LOG, errors="replace") as fh:
        log = fh.read()
    out["problems"] = problems(log.splitlines())
    out["modules"] = {
        mod.replace("-", "_"): {"stage": stage, "result": result}
        for stage, mod, result in re.findall(
            r"finish: ([\w-]+)/config-([\w-]+): (SUCCESS|FAIL|WARN)", log)}
    out["skipped"] = sorted({m.strip() for group in re.findall(
        r"Skipping modules '([^']*)' because no applicable config", log)
        for m in group.split(",") if m.strip()})
    import yaml
    with open("/var/lib/cloud/instance/cloud-config.txt") as fh:
        merged = yaml.safe_load(fh) or {}
    out["config_keys"] = sorted(merged)
    import cloudinit.config as cc
    activates = {}
    for info in pkgutil.iter_modules(cc.__path__):
        if not info.name.startswith("cc_"):
            continue
        try:
            meta = getattr(importlib.import_module("cloudinit.config." + info.name), "meta", {})
        except Exception as exc:  # a module that cannot import is itself worth reporting
            out.setdefault("import_errors", {})[info.name] = repr(exc)
            continue
        keys = set(meta.get("activate_by_schema_keys") or ())
        if keys & set(merged):
            activates[info.name[3:]] = sorted(keys & set(merged))
    out["activated_by_our_keys"] = activates
    line = "NESTCLOUD-TEST-REPORT " + json.dumps(out, sort_keys=True)
    with open("/dev/console", "w") as fh:
        fh.write("\n" + line + "\n")


if __name__ == "__main__":
    main()
