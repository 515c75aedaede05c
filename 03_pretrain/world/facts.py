"""Stating facts, describing entities, and asking questions about them (FactQuestion).
"""
from dataclasses import dataclass

from . import naming
from .knowledge import RELATIONS, Fact
from .naming import plural, with_article
from .splits import instance_split, split_of, _rng


def subject_fields(kind, subject):
    """The template fields of a subject: {s}, {S}, {p}, {P} (see Relation)."""
    if kind in ("animal", "object"):
        return {"s": with_article(subject), "S": with_article(subject).capitalize(),
                "p": plural(subject), "P": plural(subject).capitalize()}
    return {"s": subject, "S": subject, "p": subject, "P": subject}


def render(template, kind, subject, value):
    """Fill a Relation template, e.g. render("{S} lives in {o}.", "person", "Mia", "Pelford")."""
    return template.format(o=value, a_o=with_article(value), **subject_fields(kind, subject))


def possible_values(world, kind, relation):
    """Every value the relation could take: the world's names of that kind, a pool, or the numbers
    used by the world's facts. Multiple-choice distractors come from here."""
    source = RELATIONS[kind][relation].values
    if source in world.names:
        return list(world.names[source])
    if source == "number":
        return sorted({f.value for f in world.facts if (f.kind, f.relation) == (kind, relation)}, key=int)
    return list(getattr(naming, source))     # a pool: naming.COLOURS, ...


def _pronoun_form(template, kind, subject, world):
    """The template with its subject replaced by a pronoun ("She lives in ..."), or None if the
    sentence does not start with its subject."""
    if kind == "person":
        she, her = ("She", "Her") if world.gender[subject] == "f" else ("He", "His")
    else:
        she, her = "It", "Its"
    if template.startswith("{S}'s "):
        return her + template[5:]
    if template.startswith("{S} "):
        return she + template[3:]
    if template.startswith("{P} "):
        return "They" + template[3:]
    return None


def state_fact(fact, rng, world=None, pronoun=False, past=False):
    """One sentence that states `fact`, in a randomly chosen wording.

    pronoun=True (needs `world`) refers to the subject as "She"/"He"/"It"/"They" when the wording
    allows; past=True uses the relation's past-tense wordings when it has any.

    Example: state_fact(Fact("person", "Sam", "home", "Trusholm"), random.Random(1))
        -> "Sam's home is in Trusholm."   (other seeds: "Sam lives in Trusholm.", ...)
    """
    rng = _rng(rng)
    relation = RELATIONS[fact.kind][fact.relation]
    templates = relation.past if past and relation.past else relation.statements
    template = rng.choice(templates)
    if pronoun:
        pronoun_templates = [t for t in templates if _pronoun_form(t, fact.kind, fact.subject, world)]
        if pronoun_templates:
            template = _pronoun_form(rng.choice(pronoun_templates), fact.kind, fact.subject, world)
    return render(template, fact.kind, fact.subject, fact.value)


def describe(world, subject, rng, split="train"):
    """A short encyclopedia paragraph about one entity: its facts in random order and wording, plus a
    related fact (a country's towns, a town's people, an animal's owner).

    split="train" (the default) states only training facts, related ones included: the form for any
    text that answers a user (an assistant turn of chapter 04 or 05), where stating a held-out fact
    would be answering it. split="all" states every fact: only for pretraining text, where held-out
    facts are stated (never asked).

    Example (world 0): describe(world, "Wemwick", 0, split="all") ->
        "You can find Wemwick in Nalanora. It is famous for a grand library. It has 8700 people.
         Liam's home is in Wemwick."
    """
    if split not in ("all", "train"):
        raise ValueError(f"describe states the facts of split 'all' or 'train', got {split!r}")
    rng = _rng(rng)
    stated = lambda fact: split == "all" or fact.split == "train"
    kind = world.kind_of[subject]
    facts = [f for f in world.facts_about(subject) if stated(f)]
    if not facts:
        raise ValueError(f"{subject} has no {split} facts to describe")
    first, rest = facts[0], facts[1:]
    rng.shuffle(rest)
    sentences = [state_fact(first, rng)]
    sentences += [state_fact(f, rng, world, pronoun=rng.random() < 0.5) for f in rest]
    if kind == "country":
        towns = [t for t in world.towns_in(subject) if stated(world.fact(t, "country"))]
        if len(towns) > 1:
            sentences.append(f"Towns in {subject} include {', '.join(towns[:-1])} and {towns[-1]}.")
    elif kind == "town":
        country = world.get(subject, "country")
        if world.get(country, "capital") == subject and stated(world.fact(country, "capital")):
            sentences.append(state_fact(world.fact(country, "capital"), rng))
        people = [p for p in world.names["person"] if world.get(p, "home") == subject and stated(world.fact(p, "home"))]
        if people:
            sentences.append(state_fact(world.fact(rng.choice(people), "home"), rng))
    elif kind == "animal":
        owners = [p for p in world.names["person"] if world.get(p, "pet") == subject and stated(world.fact(p, "pet"))]
        if owners:
            sentences.append(state_fact(world.fact(rng.choice(owners), "pet"), rng))
    return " ".join(sentences)


@dataclass(frozen=True)
class FactQuestion:
    """A question about one fact. `answer` is the short answer ("Pelford", "a baker", "34"),
    `answer_sentence` the one-sentence answer, `choices` four options (the answer among them, at
    `answer_index`) for multiple choice; the other choices are plausible wrong answers."""
    question: str
    answer: str
    answer_sentence: str
    choices: tuple
    answer_index: int
    fact: Fact
    split: str


def fact_question(world, fact, rng):
    """A FactQuestion about `fact` in a random wording, with 3 distractors of the same relation.

    Example (world 0): fact_question(world, world.fact("Sam", "home"), 0) -> FactQuestion(
        question="In which town does Sam live?", answer="Trusholm", answer_sentence="Sam lives in Trusholm.",
        choices=("Regroton", "Hastead", "Trusholm", "Sefiford"), answer_index=2, split="heldout", ...)
    """
    rng = _rng(rng)
    relation = RELATIONS[fact.kind][fact.relation]
    others = [v for v in possible_values(world, fact.kind, fact.relation) if v != fact.value]
    options = rng.sample(others, min(3, len(others))) + [fact.value]
    rng.shuffle(options)
    short = lambda v: render(relation.short, fact.kind, fact.subject, v)
    return FactQuestion(
        question=render(rng.choice(relation.questions), fact.kind, fact.subject, fact.value),
        answer=short(fact.value),
        answer_sentence=render(relation.answer, fact.kind, fact.subject, fact.value),
        choices=tuple(short(v) for v in options), answer_index=options.index(fact.value),
        fact=fact, split=fact.split)


def wrong_fact_answer(world, question, rng):
    """A plausible wrong one-sentence answer to a FactQuestion: the same sentence with another value
    of the same relation, one of its multiple-choice distractors (the rejected reply of a preference
    pair in chapter 05; the right one is question.answer_sentence).

    Example (world 0): for "Where does Sam live?" -> "Sam lives in Hastead." (not Trusholm)
    """
    rng = _rng(rng)
    fact = question.fact
    relation = RELATIONS[fact.kind][fact.relation]
    short = lambda v: render(relation.short, fact.kind, fact.subject, v)
    wrong = [v for v in possible_values(world, fact.kind, fact.relation)
             if v != fact.value and short(v) in question.choices]
    return render(relation.answer, fact.kind, fact.subject, rng.choice(wrong))


@dataclass(frozen=True)
class Description:
    """An entity to describe ("Tell me about X."), with its reference paragraph `text` and the gold
    `facts` a good description states. The split is decided by the entity's name ("describe:X")."""
    subject: str
    text: str
    facts: tuple
    split: str


def descriptions(world, split="train", seed=0):
    """A Description of every entity of `split` (countries, towns, people, animals, objects).

    A training description states only training facts (describe(..., split="train")): it is the reply
    to a user, and stating a held-out fact there would be answering it. A held-out description's
    reference and gold facts are all the entity's facts: what chapter 07 checks a model's reply for.
    """
    split = instance_split(split)     # a description has no phrasing of its own: "ood" is "heldout"
    rng = _rng(f"descriptions:{split}:{seed}")
    facts_split = "train" if split == "train" else "all"
    out = []
    for kind in ("country", "town", "person", "animal", "object"):
        for subject in world.names[kind]:
            facts = tuple(f for f in world.facts_about(subject) if facts_split == "all" or f.split == "train")
            if split_of("describe:" + subject) == split and facts:
                out.append(Description(subject, describe(world, subject, rng, facts_split), facts, split))
    return out


def fact_questions(world, split="train", seed=0):
    """One FactQuestion for every fact of `split` ("train", "heldout", "ood" or "all"), in the world's order
    ("heldout" and "ood" give the same held-out facts; chat_phrasings.phrase_question frames them).

    Held-out facts are stated in the training corpus (as sentences) but never asked about there, so
    answering their questions tests whether a model can recall what it read in another form.
    """
    rng = _rng(f"questions:{seed}")
    split = split if split == "all" else instance_split(split)
    return [fact_question(world, f, rng) for f in world.facts if split == "all" or f.split == split]
