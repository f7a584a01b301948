"""The built-in calibration text for importance matrices (``--imatrix auto`` without ``--calibration``).

Written for this project: explanation, dialogue, instructions, code, numbers and lists, so the matrix sees the
kinds of text a chat model meets (about 3,000 tokens: five or six 512-token chunks). It is deliberately NOT the
quality report's text (tuillm.core.conversion.quality.REPORT_TEXT): that one is held out, so a quant tuned on
this text is judged on text it never saw.
"""

from __future__ import annotations

CALIBRATION_TEXT = """\
How a bicycle stays upright is one of those questions that sounds simple and is not. A bicycle standing still falls
over at once, yet the same machine rolling at walking pace will steer itself back under its rider. For a long time
people credited the gyroscopic effect of the spinning wheels, but experiments with counter-rotating wheels showed
that a bicycle balances well without it. Two things matter more. The front wheel touches the ground behind the line
of the steering axis, so when the bike leans, the contact patch drags the wheel round into the lean. And the mass of
the handlebars and fork sits ahead of that axis, which turns the wheel the same way. Steering into a fall moves the
wheels back under the centre of mass, and the bike rights itself. A rider does the rest without thinking about it.

User: Can you explain what a hash table is, in plain words?
Assistant: Imagine a wall of numbered pigeonholes. To store a letter, you run the recipient's name through a fixed
recipe that turns any name into a number, and you put the letter in the pigeonhole with that number. To find it
later, you run the same recipe again and look in one place instead of searching the whole wall. The recipe is the
hash function. Sometimes two names land on the same number; that is a collision, and the table keeps a short list
in that pigeonhole, or tries the next free one. As long as the wall is not too full, finding anything takes about
the same time however many letters you store.
User: Why does it slow down when it gets full?
Assistant: Because collisions become common. When most holes are taken, a new name is likely to land on an occupied
one, and the lists grow longer. Most implementations watch the load, the fraction of holes in use, and when it
passes a limit such as three quarters, they build a bigger wall and move every letter across. That move is slow, but
it happens rarely enough that the average cost of an insertion stays small.

Recipe: lentil soup for four.
1. Rinse 250 g of red lentils until the water runs clear.
2. Soften one chopped onion, two carrots and a stick of celery in olive oil for ten minutes over a low heat.
3. Add two cloves of garlic, a teaspoon of ground cumin and half a teaspoon of smoked paprika; stir for a minute.
4. Pour in the lentils, a tin of chopped tomatoes and 1.2 litres of stock. Simmer for 25 minutes.
5. Blend half of the soup, stir it back in, and season with salt, pepper and the juice of half a lemon.
Serve with bread. The soup keeps for three days in the fridge and thickens as it stands, so add a little water when
you warm it again.

def median(values):
    \"\"\"The middle value of a list of numbers (the mean of the two middle ones for an even count).\"\"\"
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


class RateLimiter:
    \"\"\"Allow at most `limit` events in any window of `seconds`.\"\"\"

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.events: list[float] = []

    def allow(self, now: float) -> bool:
        self.events = [t for t in self.events if now - t < self.seconds]
        if len(self.events) < self.limit:
            self.events.append(now)
            return True
        return False

The printing press did not arrive in Europe as a finished idea. Block printing had been practised in East Asia for
centuries, and movable type made of baked clay was described in China in the eleventh century. What changed in
Mainz around 1450 was a combination: a hand mould that cast many identical letters from a metal alloy, an oil-based
ink that stuck to metal, and a screw press adapted from those used for wine and paper. Within fifty years, presses
were working in more than two hundred towns. Books became cheaper, spelling slowly settled, and scholars in
different cities could finally be sure they were reading the same text, page for page, line for line.

Dear Mr Okafor,
Thank you for your letter of 12 May about the leaking roof in flat 4B. Our surveyor visited on Tuesday and found two
cracked tiles and a blocked gutter above the bedroom window. The roofer will replace the tiles and clear the gutter
on Monday 27 May, between 8 a.m. and noon, weather permitting. You do not need to be at home, but please leave the
window latch closed. If water comes in again before then, call the out-of-hours line on 0161 496 0000 and quote the
reference HR-2291.
Yours sincerely,
Priya Raman, Housing Office

Question: A train leaves at 14:35 and arrives at 17:10. How long is the journey?
Answer: From 14:35 to 17:35 would be three hours; 17:10 is 25 minutes earlier, so the journey takes 2 hours and 35
minutes.
Question: A shop sells pencils at 3 for 1.20 and pens at 2 for 2.50. What do 9 pencils and 4 pens cost?
Answer: Nine pencils are three groups of three, so 3 x 1.20 = 3.60. Four pens are two groups of two, so 2 x 2.50 =
5.00. Together they cost 8.60.
Question: If a square has an area of 49 square centimetres, what is its perimeter?
Answer: Its side is the square root of 49, which is 7 cm, and the perimeter is 4 x 7 = 28 cm.

Photosynthesis in one paragraph: plants take in carbon dioxide through small pores in their leaves and water
through their roots. In the chloroplasts, the green pigment chlorophyll absorbs mostly red and blue light and uses
the energy to split water, releasing oxygen as a by-product. The energy is stored briefly in two carrier molecules,
ATP and NADPH, which then drive a cycle of reactions that fixes carbon dioxide into sugar. The sugar feeds the plant
and, through it, nearly every food chain on land.

{
  "id": 4817,
  "name": "Hillside weather station",
  "location": {"lat": 46.5197, "lon": 6.6323, "elevation_m": 495},
  "readings": [
    {"time": "2024-03-01T06:00:00Z", "temp_c": 3.4, "humidity": 0.82, "wind_kmh": 11},
    {"time": "2024-03-01T12:00:00Z", "temp_c": 9.1, "humidity": 0.61, "wind_kmh": 19}
  ],
  "status": "ok"
}

User: My sourdough comes out dense. What am I doing wrong?
Assistant: The usual causes are a starter that is not at its peak, too short a rise, or dough that is too stiff.
Feed the starter and use it when it has doubled and smells sweet rather than sharp, usually four to eight hours
later. Let the dough rise until it has grown by about half and feels airy, which can take longer than a recipe says
in a cold kitchen. And if the dough tears when you stretch it, add a little more water next time.
User: How do I know when it has risen enough?
Assistant: Press it gently with a floured finger. If the dent springs back slowly and leaves a slight mark, it is
ready. If it springs back at once, give it more time; if it does not spring back at all, it has gone too far, so
shape it gently and bake it soon.

SELECT customer_id, COUNT(*) AS orders, SUM(total) AS spent
FROM orders
WHERE placed_at >= DATE '2024-01-01'
GROUP BY customer_id
HAVING COUNT(*) >= 3
ORDER BY spent DESC
LIMIT 10;

Some facts about the solar system. Mercury has almost no atmosphere, so its temperature swings from about 430 C in
daylight to minus 180 C at night. Venus spins backwards and so slowly that its day is longer than its year. Mars has
the tallest volcano known, Olympus Mons, about 22 kilometres high. Jupiter's Great Red Spot is a storm wider than
the Earth that has been observed for more than three hundred years. Saturn's rings are mostly water ice, some pieces
as small as grains of sand and others as large as houses. Uranus rolls around the Sun on its side. Neptune has the
fastest winds measured on any planet, over 2,000 kilometres per hour.

fn parse_pair(line: &str) -> Option<(String, i64)> {
    let (key, value) = line.split_once('=')?;
    let value = value.trim().parse::<i64>().ok()?;
    Some((key.trim().to_string(), value))
}

The committee met on Thursday to review the plans for the new footbridge. The engineer explained that the original
design, a single steel arch, would cost about 1.4 million, while a simpler beam bridge on two concrete piers would
cost 900,000 but needs a pier in the river, which the environment agency is unlikely to allow during the salmon
season. After an hour of discussion, members agreed to ask for a third option, a cable-stayed design with one mast
on the east bank, and to decide at the September meeting. The chair thanked the residents who had written in; most
asked for the bridge to be wide enough for bicycles and prams to pass each other, and that request was noted.

To change a flat tyre: loosen the wheel nuts half a turn while the car is still on the ground, then raise it with
the jack at the marked point under the sill. Remove the nuts and the wheel, fit the spare, and tighten the nuts by
hand in a star pattern. Lower the car and tighten them fully with the wrench, again in a star pattern. Check the
spare's pressure at the next garage, and remember that many space-saver spares are limited to 80 km/h.

#!/bin/sh
# Back up the notes folder into a dated archive and keep the last seven.
set -eu
stamp=$(date +%Y-%m-%d)
tar -czf "$HOME/backups/notes-$stamp.tar.gz" -C "$HOME" notes
ls -1t "$HOME"/backups/notes-*.tar.gz | tail -n +8 | xargs -r rm --

A short conversation at a market stall.
"How much are the peaches?"
"Two euros a kilo, or three kilos for five."
"Are they ripe?"
"These ones are ready today; those in the back box will be perfect on Saturday. Smell this one."
"Oh, that is lovely. I'll take two kilos of the ripe ones and one of the others, then."
"That makes five euros. Do you have a bag, or shall I give you a paper one?"
"I brought my own, thank you."

Why do we have leap years? The Earth takes about 365.2422 days to go round the Sun. A calendar of exactly 365 days
drifts by almost a quarter of a day each year, so the seasons would slide through the months. Adding a day every
fourth year overcorrects slightly, by about eleven minutes a year, which is why the Gregorian calendar skips the
leap day in century years unless they divide by 400. The year 2000 was a leap year; 1900 was not, and 2100 will not
be. With this rule the calendar drifts by only about one day in three thousand years.

In summary, good documentation answers three questions quickly: what does this do, how do I use it, and what can go
wrong. Examples help more than long explanations, and an example that can be copied and run helps most of all.
"""
