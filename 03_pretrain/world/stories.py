"""Stories: TinyStories-like, built from plot arcs and the world's facts.
"""
import string
from dataclasses import dataclass

from .knowledge import _person_words
from .naming import _capitalize, plural, with_article
from .splits import check_split, split_of, _rng, _sample


@dataclass(frozen=True)
class Story:
    """A short story: `sentences` in order (`text` joins them), its hero, its plot arc, its split, and
    the world's `facts` it states (its hero's home, pet, ...: a story is a fact check too). Chapter 07
    can give the first sentences as a prompt and score the rest (BLEU/ROUGE) against this reference."""
    text: str
    sentences: tuple
    hero: str
    arc: str
    split: str
    facts: tuple = ()


_RELATIVES = ["mum", "dad", "grandma", "grandpa", "aunt", "uncle"]
_SEARCH_PLACES = ["under the bed", "behind the door", "in the garden", "in the kitchen", "under a big leaf",
                  "in the toy box", "next to the well", "on the roof of the shed", "inside an old boot"]
_FEARS = ["the dark", "thunder", "the big waves", "the tall slide", "the old bridge", "deep water",
          "the noisy wind"]
_MAKE_GOALS = [("bake a cake", "the cake fell on the floor", "baked a new cake"),
               ("build a tower of blocks", "the tower fell down", "built it again, slowly"),
               ("paint a picture", "the wind blew the paper away", "painted a new picture"),
               ("plant a garden", "the birds ate the seeds", "planted more seeds and put up a net"),
               ("make a kite", "the kite tore on a branch", "fixed it with tape and string"),
               ("sew a hat", "the thread broke", "found stronger thread")]
_FEELINGS = ["happy", "glad", "proud", "excited", "calm"]
_ADJECTIVES = ["sunny", "windy", "cold", "warm", "bright", "quiet"]


def _story_context(world, rng):
    hero = rng.choice(world.names["person"])
    town = world.get(hero, "home")
    neighbours = [p for p in world.names["person"] if p != hero and world.get(p, "home") == town]
    friend = rng.choice(neighbours or [p for p in world.names["person"] if p != hero])
    age = int(world.get(hero, "age"))
    woman = world.gender[hero] == "f"
    who = ("young woman" if woman else "young man") if age < 30 else \
          ("old woman" if woman else "old man") if age > 64 else world.get(hero, "job")
    thing = rng.choice(world.names["object"])
    other_town = rng.choice([t for t in world.names["town"] if t != town])
    animal = rng.choice(world.names["animal"])
    ctx = dict(P=hero, F=friend, town=town, country=world.get(town, "country"), who=who,
               a_who=with_article(rng.choice(["kind", "cheerful", "curious", "busy", "gentle"]) + " " + who),
               pet=world.get(hero, "pet"), colour=world.get(hero, "colour"), food=world.get(hero, "food"),
               job=world.get(hero, "job"), age=world.get(hero, "age"), thing=thing,
               thing_colour=world.get(thing, "colour"), thing_use=world.get(thing, "use"),
               town2=other_town, known2=world.get(other_town, "known_for"),
               country2=world.get(other_town, "country"), animal=animal, animals=plural(animal),
               animal_food=world.get(animal, "food"), animal_home=world.get(animal, "habitat"),
               relative=rng.choice(_RELATIVES), feeling=rng.choice(_FEELINGS), day=rng.choice(_ADJECTIVES),
               place1=rng.choice(_SEARCH_PLACES[:5]), place2=rng.choice(_SEARCH_PLACES[5:]),
               fear=rng.choice(_FEARS))
    goal, problem, fix = rng.choice(_MAKE_GOALS)
    ctx.update(goal=goal, problem=problem, Problem=_capitalize(problem), fix=fix)
    ctx.update({k: v for k, v in _person_words(world, hero).items()})
    fw = _person_words(world, friend)
    ctx.update(F_she=fw["she"], F_She=fw["She"], F_her=fw["her"], F_him=fw["him"])
    return ctx


_OPENINGS = [
    ["Once upon a time, there was {a_who} named {P}.", "{P} lived in {town}, a town in {country}."],
    ["There once was {a_who} called {P}.", "{P} lived in {town}."],
    ["In the town of {town}, there lived {a_who} named {P}."],
    ["{P} was {a_who} who lived in {town}.", "{P} had a pet {pet} and loved to eat {food}."],
    ["Once upon a time, in {country}, there was a town called {town}.", "{P} lived in {town}."],
    ["{P} was {age} years old and lived in {town} with {her} pet {pet}."],
    ["Long ago, in the town of {town}, lived {a_who} called {P}.", "{P}'s favourite colour was {colour}."],
    ["Every morning, {P} the {job} walked through the streets of {town}."],
]

# Each arc is a list of beats; each beat a list of alternative sentences (fields from _story_context).
_ARCS = {
    "lost": [
        ["One {day} morning, {P} could not find {her} {thing_colour} {thing}.",
         "One day, {her} {thing_colour} {thing} was gone."],
        ["{P} needed it {thing_use}.", "{She} always used it {thing_use}."],
        ["{She} looked {place1}, but it was not there.", "{She} searched {place1}. Nothing!"],
        ["{She} asked {F} for help.", "{P} felt sad and went to see {F}."],
        ["{F} said, \"Let us look together.\"", "{F} smiled and said, \"Two pairs of eyes are better than one.\""],
        ["At last they found the {thing} {place2}.", "Then {F} shouted, \"Here it is!\" The {thing} was {place2}."],
        ["{P} was so {feeling} that {she} hugged {F}.", "{P} thanked {F} with a big smile."],
    ],
    "share": [
        ["One {day} day, {P} had a big bowl of {food}.", "{P} made some {food} for lunch."],
        ["{F} came by. {F_She} looked hungry.", "Then {F} knocked on the door. {F_She} had no lunch."],
        ["{P} thought for a moment.", "{P} looked at {her} bowl and then at {F}."],
        ["\"Would you like some {food}?\" {she} asked.", "{She} said, \"Let us share.\""],
        ["They ate together and talked all afternoon.", "{F} smiled, and they ate every last bite together."],
        ["Sharing made them both {feeling}.", "{P} learned that food tastes better with a friend."],
    ],
    "fear": [
        ["{P} was afraid of {fear}.", "There was one thing {P} did not like: {fear}."],
        ["Whenever {she} thought about it, {her} knees shook.", "It made {him} feel very small."],
        ["{Her} {relative} sat down next to {him}.", "One evening, {her} {relative} noticed."],
        ["\"Being brave means you are scared and you try anyway,\" said {her} {relative}.",
         "\"We can face it together,\" {her} {relative} said."],
        ["So {P} took a deep breath and tried.", "{P} held {her} {relative}'s hand and took one small step."],
        ["It was not so bad after all.", "Soon {she} was not afraid anymore."],
        ["{P} felt {feeling} and brave.", "From that day on, {fear} did not scare {him}."],
    ],
    "trip": [
        ["One {day} morning, {P} and {her} {relative} went on a trip to {town2}.",
         "{P} wanted to visit {town2}, a town in {country2}."],
        ["{town2} is known for {known2}.", "{town2} is famous for {known2}."],
        ["They walked all day and saw many new things.", "{P} looked at everything with wide eyes."],
        ["{P} liked {known2} best of all.", "The best part was {known2}."],
        ["In the evening they went home to {town}.", "When the sun went down, they went back to {town}."],
        ["{P} told {F} all about the trip.", "That night {P} dreamed about {town2}."],
    ],
    "make": [
        ["{P} wanted to {goal}.", "One {day} day, {P} decided to {goal}."],
        ["{She} used {her} favourite colour, {colour}.",
         "{She} wanted everything to be {colour}, {her} favourite colour."],
        ["But then {problem}.", "Oh no! {Problem}."],
        ["{P} was sad, but {she} did not give up.", "{P} wanted to cry, but {F} said, \"Try again!\""],
        ["So {she} {fix}.", "{P} {fix}."],
        ["This time it worked, and {P} felt {feeling}.", "At the end of the day, {P} was very {feeling}."],
    ],
    "animal": [
        ["One day, {P} found a little {animal} near {animal_home}.",
         "On a walk to {animal_home}, {P} saw a small {animal}."],
        ["It looked hungry and tired.", "The {animal} looked at {him} with big eyes."],
        ["{P} knew that {animals} eat {animal_food}.", "{P} remembered that {animals} eat {animal_food}."],
        ["So {she} brought it some {animal_food}.", "{She} found some {animal_food} and gave them to the {animal}."],
        ["The {animal} ate it all and was happy.", "Soon the {animal} felt much better."],
        ["After that, the {animal} came to visit {P} every day.", "{P} and the {animal} became good friends."],
    ],
    "race": [
        ["{P} and {F} had a race to the big tree.", "\"Let us race to the river!\" said {F}."],
        ["They ran as fast as they could.", "Off they went, laughing."],
        ["{F} won the race.", "{F} got there first."],
        ["{P} felt a little sad.", "{P} looked down at {her} feet."],
        ["\"You were fast too,\" said {F}.", "{F} said, \"That was fun! Let us race again.\""],
        ["{P} smiled. Playing together was the best part.",
         "They raced again, and this time they did not care who won."],
    ],
    "rain": [
        ["One day it was raining in {town}.", "It rained all day in {town}."],
        ["{P} wanted to play outside with {her} {pet}.", "{P} and {her} pet {pet} looked out of the window."],
        ["\"The rain will stop soon,\" said {her} {relative}.", "{Her} {relative} had an idea."],
        ["So they built a fort with blankets.", "So they read a book about {animals}, who live in {animal_home}."],
        ["When the rain stopped, they saw a rainbow.", "Later the sun came out, and a rainbow filled the sky."],
        ["{P} ran outside with {her} {pet}, {feeling} and free.", "It had been a good day after all."],
    ],
}
_ENDINGS = ["The end.", "And they were {feeling} for a long time.", "{P} went to bed with a big smile.", "",
            "From that day on, {P} smiled whenever {she} thought of it.", "And that is the story of {P} from {town}."]


def story(world, rng, split="train", arc=None):
    """A short TinyStories-like story about one of the world's people, consistent with the world's
    facts (home town, pet, favourite colour and food, the colour and use of an object, what an animal
    eats), from one of the plot arcs with a random wording for every beat.

    A training story comes from the training arcs, openings and endings (_ARCS: "lost", "share",
    "fear", "trip", "make", "animal", "race", "rain"); a held-out story only from the held-out ones
    (_HELDOUT_ARCS: "gift", "market"), whose wordings training text never uses, so a held-out story
    shares no 13 words in a row with any training text (tests check it).

    Example (world 0): story(world, random.Random(0)).text ->
        'In the town of Bornby, there lived a busy old woman named Nora. Nora and Kate had a race to
         the big tree. Off they went, laughing. Kate won the race. Nora looked down at her feet. "You
         were fast too," said Kate. Nora smiled. Playing together was the best part. And that is the
         story of Nora from Bornby.'
    """
    check_split(split)
    rng = _rng(rng)
    arcs, openings, endings = (_ARCS, _OPENINGS, _ENDINGS) if split == "train" else \
        (_HELDOUT_ARCS, _HELDOUT_OPENINGS, _HELDOUT_ENDINGS)
    if arc is not None and arc not in arcs:
        raise ValueError(f"unknown {split} story arc {arc!r}; use one of {sorted(arcs)}")

    def make():
        ctx = _story_context(world, rng)
        chosen = arc or rng.choice(sorted(arcs))
        templates = list(rng.choice(openings))
        for beat in arcs[chosen]:
            templates.append(rng.choice(beat))
        templates.append(rng.choice(endings))
        templates = [t for t in templates if t]
        sentences = [t.format(**ctx) for t in templates]
        text = " ".join(sentences)
        story_split = split_of("story:" + text) if split == "train" else "heldout"
        return Story(text, tuple(sentences), ctx["P"], chosen, story_split, _facts_told(world, templates, ctx))
    return _sample(make, split, "story")


# Which fact of the world each story field states: field -> (the field naming the subject, relation).
_FIELD_FACTS = {"town": ("P", "home"), "pet": ("P", "pet"), "colour": ("P", "colour"), "food": ("P", "food"),
                "job": ("P", "job"), "age": ("P", "age"), "country": ("town", "country"),
                "thing_colour": ("thing", "colour"), "thing_use": ("thing", "use"),
                "known2": ("town2", "known_for"), "country2": ("town2", "country"),
                "animal_food": ("animal", "food"), "animal_home": ("animal", "habitat")}


def _facts_told(world, templates, ctx):
    """The facts that a story made of `templates` states, in a fixed order."""
    fields = {name for t in templates for _, name, _, _ in string.Formatter().parse(t) if name}
    if ctx["who"] == ctx["job"] and fields & {"who", "a_who"}:    # "the baker Mia" states her job
        fields.add("job")
    return tuple(world.fact(ctx[subject], relation) for field, (subject, relation) in _FIELD_FACTS.items()
                 if field in fields)


# The held-out stories' own plots and wordings: never used in training text.
_HELDOUT_OPENINGS = [
    ["This is a tale about {P}, who made {her} home in {town}."],
    ["Not long ago, {a_who} called {P} settled down in {town}, far from the sea."],
    ["Have you heard of {P}? {She} was {a_who} from {town}, in the land of {country}."],
]
_HELDOUT_ARCS = {
    "gift": [
        ["{F}'s birthday was coming, and {P} had no present yet.", "{P} wanted to surprise {F} on {F_her} birthday."],
        ["{P} counted {her} pocket money twice.", "{She} emptied {her} piggy bank onto the table."],
        ["It was not enough for anything in the shop window.", "The shopkeeper shook his head kindly: it was too little."],
        ["Walking back, {P} had a better plan.", "On the way back, a new idea made {P} grin."],
        ["{She} wrote a poem and tied it with a {colour} ribbon.", "{She} drew a map of {town} with every street {F} loved."],
        ["{F} read it slowly and laughed with joy.", "When {F} unwrapped it, {F_she} clapped both hands."],
        ["A present from the heart, {P} decided, beats a present from a shop.", "Nothing bought could have pleased {F} more."],
    ],
    "market": [
        ["Early one {day} Saturday, {P} set up a stall at the market in {town}.",
         "{P} carried a basket of {food} to the weekly market."],
        ["Nobody stopped to buy anything all morning.", "Hours went by, and the basket stayed full."],
        ["A small boy asked why the stall had no sign.", "{F} wandered past and pointed at the blank board."],
        ["{P} painted a bright sign that said FRESH TODAY.", "Together they chalked prices on a small slate."],
        ["After lunch a crowd gathered around the stall.", "Soon customers were waiting in a long queue."],
        ["By sunset the basket was empty and {P}'s pockets jingled.", "Every last piece was sold before the bells rang six."],
    ],
}
_HELDOUT_ENDINGS = ["That was how {P} spent one memorable day.", "Folks in {town} still talk about it.",
                    "{P} never forgot what {she} learned that week."]
