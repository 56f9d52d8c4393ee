"""Checks an ALTO file written by pagemill and prints its words as JSON.

Parses the file with lxml (a real XML parser), requires the ALTO 4 namespace, the Description
and Layout sections, a Page with ID and PHYSICAL_IMG_NR per page, unique IDs throughout, and
integer-valued boxes on every String; then prints {"pages": N, "words": [[page, content],
...]} for the calling test to compare with the result JSON. Exits non-zero on any finding.
"""

import json
import sys

from lxml import etree

ALTO = "http://www.loc.gov/standards/alto/ns-v4#"
NS = {"a": ALTO}


def main(path):
    problems = []
    root = etree.parse(path).getroot()
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
