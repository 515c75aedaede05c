"""The knowledge base: every kind of fact (RELATIONS), the facts themselves, and build_world(seed).
"""
import random
from dataclasses import dataclass, field

from .naming import (_COMMON_WORDS, ANIMAL_FOODS, COLOURS, HABITATS, JOBS, KNOWN_FOR, LEGS, MATERIALS, PEOPLE,
                     PEOPLE_FOODS, SIZES, USES, invent_name)
from .splits import name_namespace, split_of


@dataclass(frozen=True)
class Relation:
    """One kind of fact, with every way the corpus may state it and every way to ask about it.

    Template fields: {S} the subject as it opens a sentence ("Mia", "A glimmet"), {s} the subject
    mid-sentence ("Mia", "a glimmet"), {P}/{p} the plural of a species ("Glimmets"/"glimmets"), {o} the
    value, {a_o} the value with its article ("a baker"). `values` names where possible values come
    from (a kind of entity, or a pool), used for multiple-choice distractors and consistency checks.
    """
    statements: tuple       # present tense, e.g. "{S} lives in {o}."
    questions: tuple        # e.g. "Where does {s} live?"
    answer: str             # the one-sentence answer, e.g. "{S} lives in {o}."
    values: str             # "town", "language", "number", "COLOURS", ...
    past: tuple = ()        # past tense, used in stories, e.g. "{S} lived in {o}."
    short: str = "{o}"      # the short answer, e.g. "{a_o}" -> "a baker"


RELATIONS = {
    "country": {
        "capital": Relation(
            ("The capital of {s} is {o}.", "{o} is the capital of {s}.", "The capital city of {s} is {o}.",
             "{S} has its capital in {o}."),
            ("What is the capital of {s}?", "Which town is the capital of {s}?"),
            "The capital of {s} is {o}.", "town"),
        "language": Relation(
            ("People in {s} speak {o}.", "The language of {s} is {o}.", "In {s}, people speak {o}.",
             "{o} is the language of {s}."),
            ("What language do people speak in {s}?", "What is the language of {s}?"),
            "People in {s} speak {o}.", "language"),
    },
    "town": {
        "country": Relation(
            ("{S} is a town in {o}.", "{S} is in {o}.", "The town of {s} is in {o}.", "You can find {s} in {o}."),
            ("In which country is {s}?", "Which country is {s} in?"),
            "{S} is in {o}.", "country"),
        "known_for": Relation(
            ("{S} is known for {o}.", "{S} is famous for {o}.", "People visit {s} for {o}."),
            ("What is {s} known for?", "What is {s} famous for?"),
            "{S} is known for {o}.", "KNOWN_FOR"),
        "population": Relation(
            ("{S} has {o} people.", "{o} people live in {s}.", "The town of {s} has {o} people."),
            ("How many people live in {s}?", "What is the population of {s}?"),
            "{o} people live in {s}.", "number"),
    },
    "person": {
        "home": Relation(
            ("{S} lives in {o}.", "{S}'s home is in {o}.", "{S} has a house in {o}.", "The home of {s} is in {o}."),
            ("Where does {s} live?", "In which town does {s} live?"),
            "{S} lives in {o}.", "town", past=("{S} lived in {o}.",)),
        "job": Relation(
            ("{S} is {a_o}.", "{S} works as {a_o}.", "{S} has a job as {a_o}."),
            ("What does {s} do for work?", "What is {s}'s job?"),
            "{S} works as {a_o}.", "JOBS", past=("{S} was {a_o}.", "{S} worked as {a_o}."), short="{a_o}"),
        "pet": Relation(
            ("{S} has a pet {o}.", "{S}'s pet is {a_o}.", "{S} keeps {a_o} as a pet."),
            ("What pet does {s} have?", "What kind of pet does {s} keep?"),
            "{S} has a pet {o}.", "animal", past=("{S} had a pet {o}.",), short="{a_o}"),
        "colour": Relation(
            ("{S}'s favourite colour is {o}.", "The favourite colour of {s} is {o}.",
             "{S} likes {o} more than any other colour."),
            ("What is {s}'s favourite colour?", "Which colour does {s} like best?"),
            "{S}'s favourite colour is {o}.", "COLOURS", past=("{S}'s favourite colour was {o}.",)),
        "food": Relation(
            ("{S}'s favourite food is {o}.", "{S} loves to eat {o}.", "The favourite food of {s} is {o}."),
            ("What is {s}'s favourite food?", "What does {s} love to eat?"),
            "{S}'s favourite food is {o}.", "PEOPLE_FOODS", past=("{S} loved to eat {o}.",)),
        "age": Relation(
            ("{S} is {o} years old.", "{S}'s age is {o}."),
            ("How old is {s}?", "What is {s}'s age?"),
            "{S} is {o} years old.", "number", past=("{S} was {o} years old.",)),
    },
    "animal": {
        "food": Relation(
            ("{S} eats {o}.", "{P} eat {o}.", "The food of {p} is {o}."),
            ("What does {s} eat?", "What do {p} eat?"),
            "{P} eat {o}.", "ANIMAL_FOODS"),
        "habitat": Relation(
            ("{P} live in {o}.", "{S} lives in {o}.", "You can find {p} in {o}."),
            ("Where do {p} live?", "Where does {s} live?"),
            "{P} live in {o}.", "HABITATS"),
        "colour": Relation(
            ("{S} is {o}.", "{P} are {o}.", "The colour of {s} is {o}."),
            ("What colour is {s}?", "What colour are {p}?"),
            "{P} are {o}.", "COLOURS"),
        "legs": Relation(
            ("{S} has {o} legs.", "{P} have {o} legs."),
            ("How many legs does {s} have?", "How many legs do {p} have?"),
            "{S} has {o} legs.", "LEGS"),
        "size": Relation(
            ("{S} is a {o} animal.", "{P} are {o} animals."),
            ("How big is {s}?", "Is {s} a big or a small animal?"),
            "{S} is a {o} animal.", "SIZES"),
    },
    "object": {
        "colour": Relation(
            ("{S} is {o}.", "{P} are {o}.", "The colour of {s} is {o}."),
            ("What colour is {s}?", "What colour are {p}?"),
            "{P} are {o}.", "COLOURS"),
        "material": Relation(
            ("{S} is made of {o}.", "{P} are made of {o}."),
            ("What is {s} made of?", "What are {p} made of?"),
            "{S} is made of {o}.", "MATERIALS"),
        "use": Relation(
            ("People use {s} {o}.", "{S} is used {o}.", "You need {s} {o}."),
            ("What is {s} used for?", "What do people use {s} for?"),
            "People use {s} {o}.", "USES"),
    },
}


@dataclass(frozen=True)
class Fact:
    """One fact of the knowledge base: `subject` has `value` for `relation`, e.g.
    Fact("country", "Dorvia", "capital", "Pelford"). Numbers are stored as their decimal text.

    `split_key` ties a fact to another one that states the same thing: "the capital of Dorvia is
    Pelford" also says that Pelford is in Dorvia, so a capital's country fact takes the split of the
    capital fact (otherwise asking one would be answering the other)."""
    kind: str
    subject: str
    relation: str
    value: str
    split_key: str = field(default="", compare=False, repr=False)

    @property
    def key(self):
        """Content key, e.g. "country.capital|Dorvia": what the fact's questions are split by."""
        return f"{self.kind}.{self.relation}|{self.subject}"

    @property
    def split(self):
        """"train" or "heldout": held-out facts are stated in the corpus but never asked about there."""
        return split_of("fact:" + (self.split_key or self.key))


@dataclass
class World:
    """The knowledge base: names of every kind, people's genders, and every fact.

    world.names["town"] -> list of town names; world.get("Sam", "home") -> "Trusholm" (world 0);
    world.facts -> list[Fact] in a fixed order; world.facts_about("Sam") -> his facts.
    """
    seed: int
    names: dict                       # kind -> list of names, in a fixed order
    gender: dict                      # person -> "f" | "m"
    facts: list
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.kind_of = {name: kind for kind, names in self.names.items() for name in names}
        for fact in self.facts:
            self._index[(fact.subject, fact.relation)] = fact

    def get(self, subject, relation):
        """The value of one fact, e.g. world.get("Hihodand", "capital") -> "Sherby" (world 0)."""
        return self._index[(subject, relation)].value

    def fact(self, subject, relation):
        return self._index[(subject, relation)]

    def facts_about(self, subject):
        return [f for f in self.facts if f.subject == subject]

    def towns_in(self, country):
        return [t for t in self.names["town"] if self.get(t, "country") == country]


def _fresh_name(rng, kind, taken):
    """Invent names until one is new, in the "world" namespace, and not a common English word."""
    while True:
        name = invent_name(rng, kind)
        if name not in taken and name.lower() not in _COMMON_WORDS and name_namespace(name) == "world":
            taken.add(name)
            return name


def build_world(seed=0, n_countries=5, n_towns=20, n_people=36, n_animals=12, n_objects=12):
    """Build the knowledge base of the world number `seed`: the same world for the same arguments.

    Each country has a capital (a town) and a language; each town a country, a thing it is known for
    and a population; each person a home town, a job, a pet (one of the world's animals), a favourite
    colour and food, and an age; each animal species a food, a habitat, a colour, a number of legs and
    a size; each object a colour, a material and a use. Capitals are bigger than the other towns.

    Example (seed 0):
        world = build_world(0)
        len(world.facts)                    # 5*2 + 20*3 + 36*6 + 12*5 + 12*3 = 382
        world.names["country"][:2]          # ['Hihodand', 'Nalanora']
        world.get("Hihodand", "capital")    # 'Sherby'
        world.facts_about("Sam")[0]         # Fact(kind='person', subject='Sam', relation='home', value='Trusholm')
    """
    if n_towns < n_countries or n_people > len(PEOPLE) or n_towns > len(KNOWN_FOR) or n_objects > len(USES):
        raise ValueError(f"build_world: need n_countries <= n_towns <= {len(KNOWN_FOR)}, n_people <= "
                         f"{len(PEOPLE)} and n_objects <= {len(USES)} (the sizes of the value pools)")
    rng = random.Random(f"world:{seed}")
    taken = set()
    countries = [_fresh_name(rng, "country", taken) for _ in range(n_countries)]
    languages = [_fresh_name(rng, "language", taken) for _ in range(n_countries)]
    towns = [_fresh_name(rng, "town", taken) for _ in range(n_towns)]
    animals = [_fresh_name(rng, "animal", taken) for _ in range(n_animals)]
    objects = [_fresh_name(rng, "object", taken) for _ in range(n_objects)]
    people = rng.sample(PEOPLE, n_people)

    facts = []
    # towns[i] is the capital of countries[i]; the other towns go to countries at random
    town_country = {town: countries[i] if i < n_countries else rng.choice(countries)
                    for i, town in enumerate(towns)}
    for country, language, capital in zip(countries, languages, towns):
        facts += [Fact("country", country, "capital", capital), Fact("country", country, "language", language)]
    known_for = rng.sample(KNOWN_FOR, n_towns)
    for i, town in enumerate(towns):
        population = rng.randrange(120, 900) * 100 if i < n_countries else rng.randrange(8, 100) * 100
        capital_key = f"country.capital|{countries[i]}" if i < n_countries else ""
        facts += [Fact("town", town, "country", town_country[town], split_key=capital_key),
                  Fact("town", town, "known_for", known_for[i]),
                  Fact("town", town, "population", str(population))]
    for name, _ in people:
        facts += [Fact("person", name, "home", rng.choice(towns)),
                  Fact("person", name, "job", rng.choice(JOBS)),
                  Fact("person", name, "pet", rng.choice(animals)),
                  Fact("person", name, "colour", rng.choice(COLOURS)),
                  Fact("person", name, "food", rng.choice(PEOPLE_FOODS)),
                  Fact("person", name, "age", str(rng.randrange(19, 81)))]
    for animal in animals:
        facts += [Fact("animal", animal, "food", rng.choice(ANIMAL_FOODS)),
                  Fact("animal", animal, "habitat", rng.choice(HABITATS)),
                  Fact("animal", animal, "colour", rng.choice(COLOURS)),
                  Fact("animal", animal, "legs", rng.choice(LEGS)),
                  Fact("animal", animal, "size", rng.choice(SIZES))]
    uses = rng.sample(USES, n_objects)
    for i, obj in enumerate(objects):
        facts += [Fact("object", obj, "colour", rng.choice(COLOURS)),
                  Fact("object", obj, "material", rng.choice(MATERIALS)),
                  Fact("object", obj, "use", uses[i])]
    names = {"country": countries, "town": towns, "person": [p for p, _ in people], "animal": animals,
             "object": objects, "language": languages}
    return World(seed=seed, names=names, gender=dict(people), facts=facts)


def _person_words(world, person):
    if world.gender[person] == "f":
        return {"she": "she", "She": "She", "her": "her", "Her": "Her", "him": "her"}
    return {"she": "he", "She": "He", "her": "his", "Her": "His", "him": "him"}
