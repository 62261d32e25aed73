"""What kind of thing a phrase names, read from its head noun: "the blue-roofed building" → building,
"the car next to the pond" → vehicle. Used to find objects "of the same kind" as a labelled one (the
negatives of the small-region recipe) and to break results down by kind. A phrase whose noun is not
known gets its own head noun as its kind."""

from __future__ import annotations

import re

# noun → kind (plural forms are folded before the lookup)
SYNONYMS: dict[str, str] = {
    **dict.fromkeys(["building", "house", "roof", "shed", "warehouse", "barn", "factory"], "building"),
    **dict.fromkeys(["car", "vehicle", "truck", "van", "bus", "lorry", "suv", "trailer"], "vehicle"),
    **dict.fromkeys(["field", "farmland", "meadow", "paddock", "cropland", "crop"], "field"),
    **dict.fromkeys(["pond", "lake", "reservoir", "basin"], "pond"),
    **dict.fromkeys(["river", "stream", "canal", "creek"], "river"),
    **dict.fromkeys(["road", "street", "lane", "highway", "path", "track"], "road"),
    **dict.fromkeys(["tree", "bush", "shrub"], "tree"),
    **dict.fromkeys(["court"], "court"),
    **dict.fromkeys(["pool"], "pool"),
}
# Words after which the head noun has already been said ("the building beside the pond").
_BREAKS = re.compile(
    r"\b(beside|near|next|by|on|in|at|of|with|to|from|behind|between|above|below|under|along|across|"
    r"close|that|which|left|right|north|south|east|west|furthest|nearest|closest)\b"
)


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "shes", "ches")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def phrase_kind(phrase: str) -> str:
    """The kind of object a phrase names (a SYNONYMS kind, or the head noun itself)."""
    text = phrase.lower()
    head = _BREAKS.split(text, maxsplit=1)[0]
    words = re.findall(r"[a-z]+", head) or re.findall(r"[a-z]+", text) or [""]
    for word in reversed(words):  # the last known noun before any relation ("the crop field")
        if _singular(word) in SYNONYMS:
            return SYNONYMS[_singular(word)]
    return _singular(words[-1])
