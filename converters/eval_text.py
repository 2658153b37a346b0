"""The fixed texts every export is validated on: a ~512-token public-domain passage for
perplexity, and short prompts (prose, code, a chat turn) for teacher-forced agreement.

Sources: H. D. Thoreau, *Walden* (1854), ch. 2; A. Conan Doyle, "A Scandal in Bohemia" (1891).
Both are in the public domain. Changing a word changes every perplexity in every report.
"""

NAME = "walden-bohemia-v1"

TEXT = (
    "I went to the woods because I wished to live deliberately, to front only the essential facts "
    "of life, and see if I could not learn what it had to teach, and not, when I came to die, discover "
    "that I had not lived. I did not wish to live what was not life, living is so dear; nor did I wish "
    "to practise resignation, unless it was quite necessary. I wanted to live deep and suck out all the "
    "marrow of life, to live so sturdily and Spartan-like as to put to rout all that was not life, to "
    "cut a broad swath and shave close, to drive life into a corner, and reduce it to its lowest terms, "
    "and, if it proved to be mean, why then to get the whole and genuine meanness of it, and publish its "
    "meanness to the world; or if it were sublime, to know it by experience, and be able to give a true "
    "account of it in my next excursion. Still we live meanly, like ants; though the fable tells us that "
    "we were long ago changed into men; like pygmies we fight with cranes; it is error upon error, and "
    "clout upon clout, and our best virtue has for its occasion a superfluous and evitable wretchedness. "
    "Our life is frittered away by detail. Simplicity, simplicity, simplicity! I say, let your affairs "
    "be as two or three, and not a hundred or a thousand.\n\n"
    "To Sherlock Holmes she is always the woman. I have seldom heard him mention her under any other "
    "name. In his eyes she eclipses and predominates the whole of her sex. It was not that he felt any "
    "emotion akin to love for Irene Adler. All emotions, and that one particularly, were abhorrent to "
    "his cold, precise but admirably balanced mind. He was, I take it, the most perfect reasoning and "
    "observing machine that the world has seen, but as a lover he would have placed himself in a false "
    "position. He never spoke of the softer passions, save with a gibe and a sneer. They were admirable "
    "things for the observer, excellent for drawing the veil from men's motives and actions. But for the "
    "trained reasoner to admit such intrusions into his own delicate and finely adjusted temperament was "
    "to introduce a distracting factor which might throw a doubt upon all his mental results. Grit in a "
    "sensitive instrument, or a crack in one of his own high-power lenses, would not be more disturbing "
    "than a strong emotion in a nature such as his."
)

# Perplexity is taken over at most this many tokens of TEXT (a runner may allow fewer).
PPL_TOKENS = 512

PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Edge devices run language models locally so that",
)
# Rendered with the model's own chat template when it has one.
CHAT_PROMPT = "Write one sentence about the sea."
