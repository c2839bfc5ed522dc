"""User-facing error messages in one line: what the CLI prints after ``error:``. No torch here."""
from __future__ import annotations

import re

_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|Given value type: |"
                    r"Given value: |Expected a <class 'NoneType'>)")


def one_line(message: str, limit: int = 300) -> str:
    """A jsonargparse or validation message folded into one line: the dotted key it concerns, then
    what is wrong with it (union bookkeeping dropped).

    >>> one_line('Parser key "model":\\n  Errors:\\n    - Problem with given class_path \\'M\\':\\n        Option \\'foo\\' is not accepted')
    "model.init_args: Option 'foo' is not accepted"
    >>> one_line('Parser key "config": File does not exist: x.yaml')
    'config: File does not exist: x.yaml'
    >>> one_line('Parser key "model.init_args.lr":\\n  Expected a float. Got value: nan')
    'model.init_args.lr: must be a finite number, got nan'
    >>> one_line('Parser key "model.init_args.population":\\n  Expected a int. Got value: x')
    "model.init_args.population: expected an integer, got 'x'"
    >>> one_line('Parser key "trainer.max_epochs":\\n  Expected a int')
    'trainer.max_epochs: expected an integer'
    """
    path, leaves = [], []
    for raw in str(message).splitlines():
        line = raw.strip().lstrip("-").strip()
        if not line or _NOISE.match(line):
            continue
        m = re.fullmatch(r'Parser key "([^"]+)":(.*)', line)
        if m:
            path.append(m.group(1))
            if m.group(2).strip():
                leaves.append(m.group(2).strip())
            continue
        if re.fullmatch(r"Problem with given class_path '[^']+':", line):
            path.append("init_args")
            continue
        leaves.append(line)
    text = "; ".join(dict.fromkeys(leaves)) or re.sub(r"\s+", " ", str(message)).strip()
    text = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text)
    text = re.sub(r"Expected a float\. Got value: ([+-]?(?:nan|inf|infinity))\b", r"must be a finite number, got \1", text,
                  flags=re.IGNORECASE)
    text = re.sub(r"Expected an? (int|float|bool)\b\.?(?: Got value: (.*?)(?=;|$))?",
                  lambda m: f"expected {_TYPE_NAMES[m.group(1)]}" + (f", got {m.group(2)!r}" if m.group(2) else ""), text)
    if path:
        text = ".".join(path) + ": " + text
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false"}
