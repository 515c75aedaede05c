"""The world's vocabulary: fixed pools of plain English values, and the invented-name generator.

World entities' names are invented ("Dorvia", "Pelford", "glimmet"); the values of their facts come
from the pools below (jobs, colours, foods, ...).
"""
# Fixed pools of plain English values. World entities' names are invented; these are the values.
PEOPLE = [("Mia", "f"), ("Lily", "f"), ("Emma", "f"), ("Ava", "f"), ("Zoe", "f"), ("Ella", "f"),
          ("Nora", "f"), ("Ruby", "f"), ("Lucy", "f"), ("Anna", "f"), ("Sara", "f"), ("Maya", "f"),
          ("Lena", "f"), ("Ivy", "f"), ("Rosa", "f"), ("Hana", "f"), ("Iris", "f"), ("Jade", "f"),
          ("Kate", "f"), ("Nina", "f"), ("Alice", "f"), ("Grace", "f"), ("Clara", "f"), ("Olga", "f"),
          ("Tom", "m"), ("Ben", "m"), ("Sam", "m"), ("Leo", "m"), ("Max", "m"), ("Jack", "m"),
          ("Noah", "m"), ("Owen", "m"), ("Finn", "m"), ("Luke", "m"), ("Adam", "m"), ("Eli", "m"),
          ("Hugo", "m"), ("Ivan", "m"), ("Jonas", "m"), ("Kai", "m"), ("Liam", "m"), ("Omar", "m"),
          ("Paul", "m"), ("Theo", "m"), ("Felix", "m"), ("Oscar", "m"), ("Ravi", "m"), ("Dan", "m")]
JOBS = ["baker", "farmer", "teacher", "doctor", "painter", "fisher", "builder", "singer", "tailor",
        "gardener", "pilot", "nurse", "carpenter", "potter", "cook", "librarian", "miller", "sailor"]
COLOURS = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "brown",
           "grey", "silver", "gold"]
PEOPLE_FOODS = ["soup", "bread", "apples", "pancakes", "rice", "cheese", "plums", "carrots", "pie",
                "noodles", "pears", "beans", "fish", "honey cake"]
ANIMAL_FOODS = ["berries", "seeds", "leaves", "fish", "grass", "nuts", "worms", "honey", "mushrooms",
                "bugs", "roots", "clover", "flowers", "moss"]
HABITATS = ["the forest", "the hills", "the river", "the desert", "the lake", "the mountains",
            "the fields", "the swamp", "the caves", "the sea", "the snow"]
SIZES = ["tiny", "small", "big", "huge"]
LEGS = ["2", "4", "6", "8"]
MATERIALS = ["wood", "glass", "stone", "clay", "iron", "paper", "wool", "silver", "copper", "leather"]
USES = ["to carry water", "to cut bread", "to catch fish", "to light the dark", "to dig holes",
        "to keep warm", "to tell the time", "to play music", "to write letters", "to sweep floors",
        "to count sheep", "to grind grain", "to open locks", "to mend nets", "to find the way"]
KNOWN_FOR = ["its bakeries", "a tall clock tower", "apple orchards", "a big market", "a stone bridge",
             "its lighthouse", "a quiet lake", "colourful houses", "a grand library", "its windmills",
             "a large zoo", "hot springs", "a music festival", "its gardens", "an old castle",
             "a busy harbour", "cheese making", "a giant oak tree", "its kite festival", "a long beach",
             "a toy museum", "its bell makers", "a glass factory", "snowy mountains"]

# The invented-name generator: syllables, then a suffix that tells the kind of thing it names.
_ONSETS = "b br d dr f fl g gr h k l m n p pr r s sh st t tr v w z".split()
_VOWELS = "a e i o u a e o".split()
_CODAS = ["", "", "", "n", "r", "l", "m", "s", "nd", "rn"]
_SUFFIXES = {"country": ["ia", "ora", "and", "ovia", "ania", "esh"],
             "town": ["ton", "by", "ford", "wick", "dale", "holm", "mere", "port", "field", "stead"],
             "language": ["ish", "ese", "ic", "an"],
             "animal": ["et", "ling", "oo", "ick", "ub", "ip", "ar"],
             "object": ["el", "on", "ard", "ope", "ug", "ine"],
             "person": ["a", "o", "en", "is", "ia", "ek", "ar"]}
KINDS = ["country", "town", "person", "animal", "object"]
_COMMON_WORDS = set(w for pool in (JOBS, COLOURS, PEOPLE_FOODS, ANIMAL_FOODS, MATERIALS, SIZES)
                    for v in pool for w in v.split()) | {p.lower() for p, _ in PEOPLE}


def invent_name(rng, kind):
    """One invented name for a thing of `kind`, e.g. "Dorvia" (country), "Pelford" (town), "glimmet"
    (animal, lower case: it names a species). Not checked for uniqueness or namespace here."""
    syllables = rng.choice(_ONSETS) + rng.choice(_VOWELS)
    if rng.random() < 0.35:     # a second, open syllable: "Dora" + ...
        syllables += rng.choice(_ONSETS[:12]) + rng.choice(_VOWELS)
    coda, suffix = rng.choice(_CODAS), rng.choice(_SUFFIXES[kind])
    if not coda and suffix[0] in "aeiou":     # no vowel clashes: "Hiho-and" -> "Hihol-and"
        coda = rng.choice("lnrdv")
    name = syllables + coda + suffix
    return name if kind in ("animal", "object") else name.capitalize()


def plural(noun):
    """English plural of an invented or pool noun: glimmet -> glimmets, box -> boxes."""
    return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


def with_article(noun):
    """"a glimmet", "an oolet": the indefinite article by the first letter."""
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


def _capitalize(text):
    return text[:1].upper() + text[1:]
