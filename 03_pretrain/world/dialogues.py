"""Dialogues between two of the world's people, and dialogue items that end on a question (with the
gold answer) for evaluation.
"""
from dataclasses import dataclass

from .facts import fact_question, state_fact
from .naming import with_article
from .problems import solution
from .splits import check_split, _rng
from .word_problems import word_problem


def _greeting(a, b, rng):
    """How a dialogue between a and b opens: (a's line, b's reply)."""
    return rng.choice([(f"Hi {b}! How are you?", f"Hi {a}! I am fine, thank you."),
                       (f"Hello {b}!", f"Hello {a}! How nice to see you."),
                       (f"Good morning, {b}.", f"Good morning, {a}!")])


def dialogue(world, rng, split="train"):
    """A short dialogue between two of the world's people, one "Name: line" per line, about where
    they live, their pets, a trip, a question about the world, or a word problem. The question and
    the problem are of `split`: a "train" dialogue is training text (the corpus), a "heldout" one
    asks held-out things (never training text; see dialogue_item for one with its gold answer).

    Example (world 0): dialogue(world, random.Random(0)) ->
        "Nora: Hello Oscar!\\nOscar: Hello Nora! How nice to see you.\\nNora: Which town do you live in?\\n
         Oscar: I live in Grusford. It is a town in Lerovia.\\n..."
    """
    check_split(split)
    rng = _rng(rng)
    a, b = rng.sample(world.names["person"], 2)
    topic = rng.choice(["home", "pet", "trip", "quiz", "math", "work"])
    home_b = world.get(b, "home")
    hello, reply = _greeting(a, b, rng)
    lines = [(a, hello), (b, reply)]
    if topic == "home":
        fact = world.fact(b, "home")
        if fact.split == "train":
            lines.append((a, rng.choice(["Where do you live now?", "Which town do you live in?"])))
        known_for = world.get(home_b, "known_for")
        lines.append((b, f"I live in {home_b}. It is a town in {world.get(home_b, 'country')}."))
        if world.fact(home_b, "known_for").split == "train":   # held-out facts are stated, never asked
            lines += [(a, f"Is that the town that is known for {known_for}?"),
                      (b, f"Yes! {home_b} is known for {known_for}.")]
        else:
            lines += [(a, "I have never been there."), (b, f"You should come! {home_b} is known for {known_for}.")]
    elif topic == "pet":
        pet = world.get(b, "pet")
        lines += [(a, "Do you have a pet?"), (b, f"Yes, I have a pet {pet}.")]
        for relation, question in [("food", "What does it eat?"), ("habitat", "Where do they live in the wild?")]:
            fact = world.fact(pet, relation)
            if fact.split == "train":   # held-out facts are stated, never asked
                lines.append((a, question))
            lines.append((b, state_fact(fact, rng)))
    elif topic == "trip":
        town = rng.choice(world.names["town"])
        lines += [(a, f"Tomorrow I am going to {town}."),
                  (b, f"{town} is famous for {world.get(town, 'known_for')}. Will you see it?"),
                  (a, rng.choice(["Yes, I cannot wait!", "I hope so.", "That is why I am going."])),
                  (b, f"Have a good trip! Say hello to {world.get(town, 'country')} for me.")]
    elif topic == "quiz":
        facts = [f for f in world.facts if f.split == split]
        for q in [fact_question(world, f, rng) for f in rng.sample(facts, 2)]:
            lines += [(a, f"Can you tell me this? {q.question}"), (b, q.answer_sentence)]
        lines.append((a, rng.choice(["You know so much!", "Thank you!", "I will remember that."])))
    elif topic == "math":
        problem = word_problem(world, rng, n_steps=rng.randint(1, 2), digits=rng.randint(1, 2), split=split)
        lines += [(a, f"Can you help me with a problem? {problem.question}"),
                  (b, "Let me think. " + solution(problem, "steps").replace("\n", " ")),
                  (a, "Thank you!")]
    else:
        job = world.get(b, "job")
        lines += [(a, "What do you do for work?") if world.fact(b, "job").split == "train" else (a, "Are you busy?"),
                  (b, f"I am {with_article(job)}. I like my job."),
                  (a, f"I am {with_article(world.get(a, 'job'))}, and I live in {world.get(a, 'home')}.")]
    last, other = (b, a) if lines[-1][0] == a else (a, b)
    lines += [(last, rng.choice(["I have to go now.", "It was nice to talk to you."])),
              (other, rng.choice([f"Goodbye, {last}!", "See you soon!", "Bye!"]))]
    return "\n".join(f"{who}: {line}" for who, line in lines)


@dataclass(frozen=True)
class DialogueItem:
    """A dialogue that stops on a question to its second speaker: `prompt` (the lines so far, ending
    with "Name:"), `reply` (the reference line), `answer` (the gold short answer: a fact's short answer
    or a problem's number, as text), `split`."""
    prompt: str
    reply: str
    answer: str
    split: str


def dialogue_item(world, rng, split="train"):
    """A greeting, then a question about a fact or a word problem of `split`, asked by one person of
    the other: an evaluation item in the dialogue format of the corpus (chapter 07).

    Example (world 0): dialogue_item(world, 0, "heldout").prompt ->
        "Nora: Hi Oscar! How are you?\nOscar: Hi Nora! I am fine, thank you.\nNora: Can you tell me this? ...\nOscar:"
    """
    check_split(split)
    rng = _rng(rng)
    a, b = rng.sample(world.names["person"], 2)
    hello, reply = _greeting(a, b, rng)
    if rng.random() < 0.5:
        q = fact_question(world, rng.choice([f for f in world.facts if f.split == split]), rng)
        question, answer_line, answer = f"Can you tell me this? {q.question}", q.answer_sentence, q.answer
    else:
        p = word_problem(world, rng, n_steps=rng.randint(1, 2), digits=rng.randint(1, 2), split=split)
        question = f"Can you help me with a problem? {p.question}"
        answer_line, answer = "Let me think. " + solution(p, "steps").replace("\n", " "), str(p.answer)
    prompt = f"{a}: {hello}\n{b}: {reply}\n{a}: {question}\n{b}:"
    return DialogueItem(prompt, answer_line, answer, split)
