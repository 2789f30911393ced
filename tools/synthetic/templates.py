"""Sentence templates and word lists a review is put together from (text.py): wrappers of an
aspect clause, openers, closers, neutral facts, star ratings, mixed and cue sentences, short
reviews, emoji, slot values, and the scraping noise (trackers, styles, HTML wrappers)."""

from __future__ import annotations

WRAP = {
    "positive": (
        "{c}.",
        "{c}.",
        "{c}!",
        "honestly {c}.",
        "{c}, which I really appreciate.",
        "pleasantly surprised: {c}.",
        "{c}, super happy about that.",
        "I have to say {c}.",
        "also {c}.",
    ),
    "negative": (
        "{c}.",
        "{c}.",
        "unfortunately {c}.",
        "{c}, which is really annoying.",
        "sadly {c}.",
        "{c}. Not impressed.",
        "on top of that {c}.",
        "and {c}.",
    ),
    "neutral": (
        "{c}.",
        "{c}.",
        "{c}, for what it's worth.",
        "FWIW {c}.",
        "{c} I guess.",
        "as far as I can tell {c}.",
    ),
}

OPENERS_CONTEXT = (
    "Bought {item} for {use}.",
    "Got {item} on sale last week.",
    "Ordered {item} to replace my old one.",
    "Been using {item} for about {duration} now.",
    "Picked this up after reading a bunch of reviews.",
    "My {person} recommended {item}.",
    "Update after {duration}:",
    "First review here.",
)
OPENERS = {
    "positive": (
        "Really happy with {item}.",
        "Pleasantly surprised.",
        "Does exactly what I needed.",
        "Very happy with this purchase.",
        "So far so good.",
        "Didn't expect much but {it_be} actually good.",
    ),
    "negative": (
        "Really disappointed.",
        "Do not buy.",
        "DO NOT BUY.",
        "Regret buying {item}.",
        "Well, that was a letdown.",
        "Should have read the reviews first.",
    ),
    "neutral": (
        "Mixed feelings about {item}.",
        "Honest review:",
        "Short review:",
        "Not sure how I feel yet.",
    ),
}
CLOSERS = {
    "positive": (
        "Would buy again.",
        "Recommend.",
        "Highly recommend.",
        "Worth it.",
        "No regrets.",
        "Ordering another one for my {person}.",
        "Not bad at all for the price.",
        "Can't complain.",
        "No complaints so far.",
    ),
    "negative": (
        "Sending it back.",
        "Not worth it.",
        "Save yourself the trouble.",
        "Avoid.",
        "Won't be ordering from this seller again.",
        "Back in the box it goes.",
        "Not great.",
        "Wouldn't recommend.",
        "Doesn't do what it says.",
    ),
    "neutral": (
        "Will update later.",
        "We'll see how it holds up.",
        "Ok for now.",
        "It is what it is.",
        "Might buy again, might not.",
        "Does the job I guess.",
        "Not great, not terrible.",
        "Not bad, not amazing either.",
    ),
}
FACTS = (
    "Arrived {day}, haven't used it yet.",
    "Package came a day early, will update after a week of use.",
    "Bought this as a gift so can't say much yet.",
    "Ordered the {variant} one.",
    "Same as the one sold in stores as far as I can tell.",
    "Replaced an older model that lasted about five years.",
    "Using it mostly for {use}.",
    "Second time ordering this for the office.",
    "The color is as pictured.",
    "Does what it says on the box.",
    "Exactly what you'd expect for the price.",
    "Still figuring out all the settings.",
    "It's fine.",
    "Average {noun}.",
    "Nothing special, nothing wrong.",
    "Haven't opened it yet, it's for a trip next month.",
    "Came with a cable and a quick start card.",
    "Comparable to the {noun} I had before.",
)
STARS = {
    "positive": (
        "5/5",
        "5 out of 5.",
        "Five stars.",
        "five stars",
        "4/5",
        "4 stars.",
        "★★★★★",
        "★★★★☆",
        "4.5/5",
        "Giving it 5 stars.",
        "10/10",
    ),
    "negative": (
        "1/5",
        "One star.",
        "2/5",
        "2 stars.",
        "★☆☆☆☆",
        "★★☆☆☆",
        "Zero stars if I could.",
        "1 star because I have to pick something.",
        "Two stars.",
    ),
    "neutral": (
        "3/5",
        "Three stars.",
        "3 out of 5.",
        "★★★☆☆",
        "3 stars, middle of the road.",
        "Somewhere between 3 and 4 stars.",
        "2.5/5",
    ),
}
MIXED = {
    "positive": (
        "only complaint: {n}.",
        "{p}, though {n}.",
        "{p}. Minor gripe: {n}.",
    ),
    "negative": (
        "{p}, but {n} and that's a dealbreaker.",
        "sure, {p}, but {n}.",
        "{p}, doesn't matter when {n}.",
    ),
    "neutral": (
        "{p}, but {n}.",
        "{p} but {n}, so it's a wash.",
        "mixed feelings: {p}, however {n}.",
        "Pros: {p}. Cons: {n}.",
        "{p}; on the other hand {n}.",
    ),
}
CUES = {
    "positive": (
        "Love it!",
        "I absolutely love {item}.",
        "Love the {aspect}.",
        "Excellent quality for the price.",
        "Excellent {noun}, would buy again.",
        "Perfect for {use}.",
        "Just perfect.",
        "Perfect fit.",
        "Excellent!",
        "We love {item}.",
        "Perfect gift for my {person}.",
        "The {aspect} is excellent.",
    ),
    "negative": (
        "Want a refund.",
        "I asked for a refund and I'm still waiting.",
        "Complete waste of money.",
        "Arrived broken.",
        "It was broken out of the box.",
        "The {noun} was broken after two days.",
        "Total waste of money, returning it.",
        "Requested a refund the same day.",
        "Mine came broken and the replacement is broken too.",
        "What a waste of money.",
    ),
    "neutral": (
        "Love the {aspect} but {n}.",
        "The {aspect} is excellent, but {n}.",
        "Not perfect, but it does the job.",
        "The seal was broken on arrival but everything inside was fine.",
        "Was going to ask for a refund but it started working after an update, so undecided.",
        "Far from perfect, but fine for {use}.",
    ),
}
SHORT = {
    "positive": (
        "good",
        "Nice!",
        "works 👍",
        "Good buy.",
        "happy with it",
        "solid",
        "does the job well",
        "very nice",
        "A+",
        "great",
        "Great product",
        "Thanks!",
        "not bad at all",
        "would buy again",
    ),
    "negative": (
        "nope",
        "junk",
        "disappointed",
        "doesn't work",
        "stopped working",
        "don't bother",
        "Not as described.",
        "cheap junk",
        "sent it back",
        "not great",
    ),
    "neutral": (
        "meh",
        "ok",
        "OK",
        "fine",
        "it's ok",
        "as described",
        "average",
        "it's alright",
        "does what it says",
        "ok i guess",
        "haven't tried it yet",
        "gift, can't comment",
    ),
}
SHORT_CUES = {
    "positive": (
        "love it",
        "Love it!!",
        "perfect",
        "Excellent.",
        "perfect 👌",
        "excellent product",
    ),
    "negative": ("broken", "arrived broken", "refund please", "waste of money", "Waste of money!!"),
    "neutral": ("not perfect", "love/hate"),
}
SHORT_TAILS = ("", "", ".", "!", " so far", " tbh", " for the price", "...", " overall", " imo")
EMOJI = {
    "positive": ("😍", "👍", "🔥", "✨", "🙌", "😊", "👌"),
    "negative": ("😡", "👎", "😤", "💀", "🙄", "😞"),
    "neutral": ("🤷", "🤔", "📦", "😐"),
}
SLOTS = {
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"),
    "duration": ("two weeks", "a month", "three days", "six months", "a year", "10 days"),
    "person": ("sister", "coworker", "roommate", "dad", "wife", "husband", "mom"),
    "variant": ("black", "white", "grey", "navy", "large", "medium", "2-pack"),
}
RATINGS = {"positive": (5, 5, 5, 4, 4), "negative": (1, 1, 1, 2, 2), "neutral": (3, 3, 3, 2, 4)}
SWAPS = {
    "the": "this",
    "this": "the",
    "really": "very",
    "very": "really",
    "good": "nice",
    "nice": "good",
    "great": "good",
    "but": "though",
    "so": "very",
    "it's": "its",
    "bought": "got",
    "got": "bought",
    "and": "&",
    "is": "was",
    "was": "is",
}
FILLERS = ("really", "very", "just", "so", "actually", "honestly")
TRACKERS = (
    '<script>window.dataLayer=window.dataLayer||[];dataLayer.push({"event":"review_view"});'
    "</script>",
    '<script type="text/javascript">var _rt={pid:"{pid}",t:Date.now()};</script>',
    '<script async src="https://cdn.tracker.example/px.js?id=rv"></script>',
)
STYLES = (
    "<style>.review-text{font-size:14px;line-height:1.4}</style>",
    '<style type="text/css">.a-icon-star{display:none}</style>',
)
WRAPPERS = (
    "<p>{}</p>",
    '<span class="review-text">{}</span>',
    '<div class="review-body" data-hook="review-body"><span>{}</span></div>',
    '<span class="a-size-base review-text-content">{}</span>',
    "<p>{}</p><p></p>",
    "{}",
)
