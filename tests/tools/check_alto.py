"""Checks an ALTO file written by pagemill and prints its words as JSON.

Parses the file with lxml (a real XML parser) and validates it against the published ALTO 4
schema (tests/fixtures/alto-4-3.xsd, with the XLink schema it imports beside it; both read
from disk, never from the network). Then requires the ALTO 4 namespace, the Description and
Layout sections, a Page with ID and PHYSICAL_IMG_NR per page, unique IDs throughout, and
integer-valued boxes on every String; then prints {"pages": N, "words": [[page, content],
...]} for the calling test to compare with the result JSON. Exits non-zero on any finding.
"""

import json
import pathlib
import sys

from lxml import etree

ALTO = "http://www.loc.gov/standards/alto/ns-v4#"
NS = {"a": ALTO}
SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "alto-4-3.xsd"


def schema_problems(document):
    """Where the document breaks the ALTO 4 schema, one line per finding."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    schema = etree.XMLSchema(etree.parse(str(SCHEMA), parser))
    if schema.validate(document):
        return []
    return [f"schema: line {e.line}: {e.message}" for e in schema.error_log]


def main(path):
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.parse(path, parser)
    problems = schema_problems(document)
    root = document.getroot()
    if root.tag != f"{{{ALTO}}}alto":
        problems.append(f"root element is {root.tag}, not alto in the ALTO 4 namespace")
    for section in ("a:Description/a:MeasurementUnit", "a:Layout"):
        if root.find(section, NS) is None:
            problems.append(f"missing {section}")
    ids = [e.get("ID") for e in root.iter() if e.get("ID") is not None]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"duplicate IDs: {duplicates[:5]}")
    pages = root.findall("a:Layout/a:Page", NS)
    words = []
    for number, page in enumerate(pages, start=1):
        for attribute in ("ID", "PHYSICAL_IMG_NR"):
            if page.get(attribute) is None:
                problems.append(f"page {number} has no {attribute}")
        for string in page.iter(f"{{{ALTO}}}String"):
            for attribute in ("HPOS", "VPOS", "WIDTH", "HEIGHT"):
                value = string.get(attribute)
                if value is None or not value.lstrip("-").isdigit():
                    problems.append(f"String {string.get('ID')} has {attribute}={value!r}")
            words.append([number, string.get("CONTENT")])
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"pages": len(pages), "words": words}))


if __name__ == "__main__":
    main(sys.argv[1])
