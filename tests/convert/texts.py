"""Texts for the converter tests (original, written for this project)."""

# Held out: not the report text; used for perplexity and logit parity.
HELD_OUT = """\
On the first clear night of autumn the observatory opened its dome to visitors. A queue of families wound past
the car park, children holding paper star charts and parents holding flasks of tea. The astronomer on duty, a
patient woman called Ines, pointed the telescope at Saturn first, because nothing wins a crowd like rings.

"Is it real?" a boy asked, stepping back from the eyepiece. He had expected a photograph, something printed and
pasted inside the tube. Ines laughed and told him that the light he had just seen had left the planet about
eighty minutes earlier, travelling faster than anything else in the universe, only to end its journey in his
eye. He looked again for a long time, and then he asked how far away the nearest star was.

Later she showed them the Andromeda galaxy, a pale smudge that most people found disappointing until she
explained what it was: hundreds of billions of suns, so distant that their light had set out before there were
any humans on Earth to see it. The queue grew quiet. Somebody's grandfather said he had lived seventy-four years
without once thinking about that, and now he would probably think about nothing else.

Running an observatory is mostly maintenance. The dome motor needs grease, the mirror needs cleaning twice a
year, and the software that drives the mount must be updated without breaking the scripts that astronomers
wrote a decade ago. Ines kept a log of every fault: a frozen shutter in January, a power cut in March, a family
of wasps in the cable duct in July. Each entry ended with the fix, because the next person on duty would need
it at two in the morning with nobody to ask.

When the last visitors had gone she closed the dome, wrote up the night, and drove home along the empty coast
road. The sea was black and flat, and above it the sky was full of the same stars the visitors had queued to
see, free to anyone who stopped the car and looked up.

In the morning the weather turned. Rain moved in from the west, the forecast promised a week of cloud, and the
observatory went back to its quieter work: calibrating instruments, answering letters from schools, and
reducing data that had been collected months before. Ines did not mind. Clear nights were a gift, but most of
science happened in the long grey days between them, in careful checking and patient repetition.
"""

# Code, emoji, CJK and whitespace runs: llama.cpp must split it exactly as the HF tokenizer does.
TOKENIZER_MIX = (
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\n"
    "\tIndented\twith\ttabs   and    runs      of spaces.  \n"
    "Emoji: 🚀🦙 ✅ 😶‍🌫️ 👍🏽 — and CJK: 我想在东京工作。日本語のテキスト、한국어 문장.\n"
    "Numbers 3 33 333 3333 3.14159 1,000,000; quotes 'single' \"double\" I've you'll WE'RE.\n"
    "   leading spaces, trailing spaces   \n\n\n\nend"
)

# More of what splits differently between pre-tokenizers: line endings, Unicode spaces and marks, other scripts,
# digit runs, contractions in every case, punctuation runs and a whitespace-only tail. All in NFC form: llama.cpp
# does not normalize, and Qwen2's tokenizer.json composes decomposed accents first (e + U+0301 -> é).
TOKENIZER_TEXTS = (
    "Windows\r\nline\r\nendings\r\n\r\nand a\u00a0non-breaking space, a\u2009thin one; "
    "caf\u00e9, na\u00efve, \u00c5ngstr\u00f6m.\n"
    "Ελληνικά, русский текст, العربية, हिन्दी में लिखा, ภาษาไทย, ﬁnance ﬂow (ligatures).\n",
    "int main(void) {\n\tfor (int i = 0; i < 10000; ++i) { printf(\"%d\\n\", i * 31337); }\n}\n"
    "{\"key\": [1, 22, 333, 4444], \"url\": \"https://example.org/a_b-c?d=e&f=1.5e-3\"}\n"
    "SHOUTING IT'S, WE'LL, THEY'D; mixed It'S We'Ll; 12:30pm 2024-02-29 $1,299.99 50% #tag @user\n",
    "!!!??? ...... ------ ====== ****** ~~~~~~ ```` \"\"\"\" '''' \n\n\n\t\t\t   \n \n  \n   ",
)
