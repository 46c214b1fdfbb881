"""JUnit XML: one testcase per checkpoint (loading and auditing it), per probe run, and per gate and direction."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from gradhealth.render.escape import xml_text
from gradhealth.render.registry import NamedReport

__all__ = ["render"]


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")


def _make_safe(root: ET.Element) -> None:
    """Write out control characters in every attribute and text: XML 1.0 cannot hold most of them, and names come
    from files (the XML writer escapes ``<``, ``&``, ``>`` and quotes itself, so ``]]>`` is safe too)."""
    for element in root.iter():
        if element.text:
            element.text = xml_text(element.text)
        for key, value in element.attrib.items():
            element.set(key, xml_text(value))


def render(reports: Sequence[NamedReport], **options: Any) -> str:
    """A ``<testsuites>`` document with one ``<testsuite>`` per audited model."""
    root = ET.Element("testsuites", name=str(options.get("title", "gradhealth")))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for entry in reports:
        suite = ET.SubElement(root, "testsuite", name=entry.name)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        audit = _case(suite, entry.name, "audit")
        counts["tests"] += 1
        if entry.report is None:
            ET.SubElement(audit, "error", message=entry.error or "not audited", type="CheckpointError")
            counts["errors"] += 1
        else:
            ET.SubElement(audit, "system-out").text = f"verdict {entry.report.verdict}"
            probes = ["lag_profile", *entry.report.probes]
            for probe in probes:
                case = _case(suite, entry.name, f"probe {probe}")
                counts["tests"] += 1
                found = [f for f in entry.report.findings if f.probe == probe]
                if found:
                    ET.SubElement(case, "system-out").text = "\n".join(
                        f"{f.code} {f.severity}: {f.title}: {f.message}" for f in found
                    )
            for probe, reason in entry.report.skipped_probes.items():
                case = _case(suite, entry.name, f"probe {probe}")
                ET.SubElement(case, "skipped", message=reason)
                counts["tests"] += 1
                counts["skipped"] += 1
        for gate in entry.gates:
            case = _case(suite, entry.name, f"gate {gate.gate} ({gate.direction})")
            counts["tests"] += 1
            if not gate.passed:
                ET.SubElement(case, "failure", message=gate.message, type=gate.gate).text = gate.message
                counts["failures"] += 1
            elif gate.borderline:
                ET.SubElement(case, "system-out").text = f"borderline: {gate.message}"
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    _make_safe(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
