"""The demo's facts: the botanical fruit type of each fruit the demo model learns.

The demo job's answers are checked against this table, and the model is trained
on it: every fruit in ``fruits/fruits.jsonl`` and in the job's examples is here.
"""

from __future__ import annotations

FRUIT_FAMILIES: dict[str, str] = {
    # drupes: one stone around the seed
    "peach": "drupe", "cherry": "drupe", "plum": "drupe", "apricot": "drupe",
    "nectarine": "drupe", "mango": "drupe", "olive": "drupe", "coconut": "drupe",
    "damson": "drupe", "sloe": "drupe",
    # pomes: core from the ovary, flesh from the receptacle
    "apple": "pome", "pear": "pome", "quince": "pome", "loquat": "pome",
    "medlar": "pome", "aronia": "pome", "serviceberry": "pome", "rowan": "pome",
    # true berries: fleshy pericarp, usually many seeds
    "grape": "berry", "tomato": "berry", "blueberry": "berry",
    "cranberry": "berry", "banana": "berry", "kiwi": "berry",
    "persimmon": "berry", "eggplant": "berry", "gooseberry": "berry",
    "currant": "berry", "guava": "berry", "avocado": "berry", "papaya": "berry",
    # hesperidia: citrus
    "orange": "hesperidium", "lemon": "hesperidium", "lime": "hesperidium",
    "grapefruit": "hesperidium", "tangerine": "hesperidium",
    "mandarin": "hesperidium", "pomelo": "hesperidium", "kumquat": "hesperidium",
    "citron": "hesperidium", "yuzu": "hesperidium", "clementine": "hesperidium",
    # pepos: gourd family, hard rind
    "watermelon": "pepo", "cucumber": "pepo", "pumpkin": "pepo",
    "cantaloupe": "pepo", "zucchini": "pepo", "squash": "pepo",
    "honeydew": "pepo",
    # aggregates: many ovaries of one flower
    "raspberry": "aggregate", "blackberry": "aggregate",
    "boysenberry": "aggregate", "loganberry": "aggregate",
    "dewberry": "aggregate", "cloudberry": "aggregate",
    "strawberry": "aggregate",
    # multiples: the ovaries of many flowers fused
    "pineapple": "multiple", "mulberry": "multiple", "fig": "multiple",
    "jackfruit": "multiple", "breadfruit": "multiple", "noni": "multiple",
}

# The colour of each ripe fruit (its skin, roughly): the generalist's second task, so
# that it knows fruits without being a specialist of their botanical type.
FRUIT_COLOURS: dict[str, str] = {
    "peach": "orange", "cherry": "red", "plum": "purple", "apricot": "orange",
    "nectarine": "red", "mango": "yellow", "olive": "green", "coconut": "brown",
    "damson": "purple", "sloe": "blue", "apple": "red", "pear": "green", "quince": "yellow",
    "loquat": "orange", "medlar": "brown", "aronia": "black", "serviceberry": "purple",
    "rowan": "red", "grape": "purple", "tomato": "red", "blueberry": "blue",
    "cranberry": "red", "banana": "yellow", "kiwi": "brown", "persimmon": "orange",
    "eggplant": "purple", "gooseberry": "green", "currant": "red", "guava": "green",
    "avocado": "green", "papaya": "orange", "orange": "orange", "lemon": "yellow",
    "lime": "green", "grapefruit": "yellow", "tangerine": "orange", "mandarin": "orange",
    "pomelo": "yellow", "kumquat": "orange", "citron": "yellow", "yuzu": "yellow",
    "clementine": "orange", "watermelon": "green", "cucumber": "green", "pumpkin": "orange",
    "cantaloupe": "orange", "zucchini": "green", "squash": "yellow", "honeydew": "green",
    "raspberry": "red", "blackberry": "black", "boysenberry": "purple", "loganberry": "red",
    "dewberry": "black", "cloudberry": "orange", "strawberry": "red", "pineapple": "yellow",
    "mulberry": "black", "fig": "purple", "jackfruit": "green", "breadfruit": "green",
    "noni": "yellow",
}
