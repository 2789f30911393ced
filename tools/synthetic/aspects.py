"""Review clauses per product aspect, first part: the aspects every product shares (price,
delivery, ...) and those of headphones, earbuds, blenders and running shoes. `{it}`, `{be}`,
`{day}`... are slots filled per review (text.py)."""

from __future__ import annotations

from tools.synthetic.model import Aspect, aspect

FIRST_ASPECTS: dict[str, Aspect] = {
    "price": aspect(
        "price",
        [
            "the price was hard to beat",
            "for the money {it} {be} a steal",
            "worth every penny at this price",
            "cheaper than the store brand and does the same job",
        ],
        [
            "way overpriced for what you get",
            "the price went up the day after I ordered",
            "not worth what I paid",
            "you can get the same thing for half the price elsewhere",
        ],
        [
            "the price is about average",
            "paid a little under retail",
            "got it on sale, the normal price seems high",
            "price is in line with similar ones",
        ],
    ),
    "delivery": aspect(
        "delivery",
        [
            "shipping was fast, arrived a day early",
            "delivery was quick and the driver was careful",
            "showed up two days ahead of schedule",
        ],
        [
            "delivery took almost three weeks",
            "the box showed up crushed and late",
            "tracking said delivered but it came four days later",
            "the package was left out in the rain",
        ],
        [
            "arrived on {day} as scheduled",
            "shipping took about a week",
            "came within the estimated window",
            "delivery was a day later than quoted",
        ],
    ),
    "packaging": aspect(
        "packaging",
        [
            "packaging was neat and recyclable",
            "came well packed with plenty of padding",
        ],
        [
            "packaging was flimsy and the seal was torn",
            "the box looked like it had been opened before",
            "no padding at all, just rattling around in the box",
        ],
        [
            "comes in a plain cardboard box",
            "packaging is minimal",
            "the box has the unit, a cable and a manual",
        ],
    ),
    "customer_service": aspect(
        "customer service",
        [
            "customer service replied within an hour and sorted it out",
            "support sent a replacement part without any hassle",
            "the seller answered my question the same day",
        ],
        [
            "customer service never answered my emails",
            "support kept sending me the same copy-paste reply",
            "the seller stopped responding once I mentioned a problem",
            "spent 40 minutes on hold with support",
        ],
        [
            "I asked support about the warranty and they sent a form",
            "haven't needed customer service yet",
            "the seller sent a follow-up email asking for a review",
        ],
    ),
    "build_quality": aspect(
        "build quality",
        [
            "the build quality is solid for the price",
            "the materials feel sturdy and well made",
            "no creaks or loose parts anywhere",
        ],
        [
            "the plastic feels cheap and thin",
            "a seam started splitting after a few days",
            "there's a rattle inside that wasn't there at first",
            "the finish is already chipping",
        ],
        [
            "build quality is ok, mostly plastic",
            "{it} {be} a bit lighter than I expected",
            "materials are about what you'd expect at this price",
        ],
    ),
    "instructions": aspect(
        "instructions",
        [
            "setup took two minutes with the included guide",
            "the instructions were clear and actually helpful",
        ],
        [
            "the manual is badly translated and useless",
            "there were no instructions in the box at all",
            "the setup instructions skip half the steps",
        ],
        [
            "the manual is a single folded sheet",
            "had to watch a video to set it up",
            "the instructions come in several languages",
        ],
    ),
    "sound": aspect(
        "sound",
        [
            "the sound is crisp with plenty of bass",
            "sound quality is way better than what I had before",
            "vocals are clear and the bass doesn't muddy anything",
        ],
        [
            "the sound is tinny and flat",
            "there's a constant hiss even with nothing playing",
            "audio distorts as soon as you turn it up",
            "bass is basically nonexistent",
        ],
        [
            "sound is decent, nothing special",
            "sound is fine for podcasts, a bit thin for music",
            "the default EQ is very bass heavy",
        ],
    ),
    "battery": aspect(
        "battery",
        [
            "the battery easily lasts a full week",
            "battery life is better than advertised",
            "charges quickly and holds it for days",
        ],
        [
            "the battery died within a week",
            "the battery drains overnight even when switched off",
            "battery life is half of what they claim",
            "it won't hold a charge anymore",
        ],
        [
            "the battery lasts about two days for me",
            "haven't had to charge it yet",
            "battery life is roughly what the listing says",
            "takes around two hours to fully charge",
        ],
    ),
    "comfort": aspect(
        "comfort",
        [
            "comfortable even after a few hours",
            "the padding is soft and doesn't get hot",
            "comfy enough for long sessions",
        ],
        [
            "uncomfortable after half an hour",
            "the padding flattened out in a week",
            "it pinches and gets sweaty fast",
        ],
        [
            "comfort is ok for an hour or so",
            "a bit firm at first, probably needs breaking in",
            "comfort is average",
        ],
    ),
    "noise_cancelling": aspect(
        "noise cancelling",
        [
            "noise cancelling blocks out the whole train",
            "the ANC is impressive for this price",
        ],
        [
            "noise cancelling barely does anything",
            "the ANC creates a weird pressure feeling and a hiss",
        ],
        [
            "noise cancelling takes the edge off but doesn't block voices",
            "the ANC is fine on planes, less so in offices",
        ],
    ),
    "connectivity": aspect(
        "connection",
        [
            "pairs instantly with my phone and laptop",
            "the bluetooth connection has never dropped",
            "switching between devices is seamless",
        ],
        [
            "keeps disconnecting every few minutes",
            "pairing fails half the time",
            "the connection drops whenever my phone is in my pocket",
        ],
        [
            "pairing took a couple of tries the first time",
            "connects over bluetooth 5.0",
            "works with my phone, haven't tried the laptop",
        ],
    ),
    "mic": aspect(
        "mic",
        [
            "people on calls say I sound clear",
            "the mic handles background noise well",
        ],
        [
            "the mic makes me sound like I'm underwater",
            "nobody can hear me on calls",
        ],
        [
            "the mic is ok for calls, not for recording",
            "mic quality is average",
        ],
    ),
    "motor_power": aspect(
        "motor",
        [
            "crushes ice in seconds",
            "the motor handles frozen fruit without struggling",
            "smoothies come out silky every time",
        ],
        [
            "the motor struggles with anything frozen",
            "it stalls every time I add ice",
            "leaves chunks no matter how long I run it",
        ],
        [
            "handles soft fruit fine, frozen stuff takes longer",
            "has three speeds and a pulse button",
            "works ok for smoothies",
        ],
    ),
    "noise": aspect(
        "noise level",
        [
            "surprisingly quiet",
            "quieter than the one it replaced",
            "the noise level is fine even early in the morning",
        ],
        [
            "loud enough to wake the whole house",
            "makes a nasty grinding noise",
            "there's a high pitched whine the whole time it runs",
        ],
        [
            "it's about as loud as you'd expect",
            "a bit noisy but nothing unusual",
            "the noise is noticeable but ok",
        ],
    ),
    "blades": aspect(
        "blades",
        [
            "the blades are sharp and easy to remove",
            "the blade assembly feels really sturdy",
        ],
        [
            "one of the blades came loose after a month",
            "the blade assembly leaks from the bottom",
        ],
        [
            "the blade unit comes out for cleaning",
            "the blades are fixed to the jar",
        ],
    ),
    "cleaning": aspect(
        "cleanup",
        [
            "cleanup takes a minute",
            "everything goes in the dishwasher",
            "easy to wipe clean",
        ],
        [
            "impossible to clean around the seal",
            "gunk gets stuck in every corner",
            "the coating started peeling after washing",
        ],
        [
            "it's hand wash only",
            "cleaning is a bit fiddly but doable",
            "the manual says not to use the dishwasher",
        ],
    ),
    "smell": aspect(
        "smell",
        [
            "no weird chemical smell out of the box",
            "no smell at all even after weeks",
        ],
        [
            "it has a strong chemical smell that won't go away",
            "smells like burning plastic every time I use it",
            "still smells like a tire factory after a week",
        ],
        [
            "had a slight smell at first that faded after a day",
            "there's a faint new plastic smell",
            "the smell went away after airing it out",
        ],
    ),
    "capacity": aspect(
        "size",
        [
            "big enough for the whole family",
            "holds way more than I expected",
        ],
        [
            "way smaller than it looks in the photos",
            "barely fits two portions",
        ],
        [
            "capacity is fine for two people",
            "the capacity is in the description, check before buying",
        ],
    ),
    "fit": aspect(
        "fit",
        [
            "fits true to size",
            "the fit is snug without being tight",
            "fits exactly, everything lines up",
        ],
        [
            "runs a full size small",
            "the fit is loose and it slides around",
            "the cutouts don't line up at all",
        ],
        [
            "fits as expected, ordered my usual size",
            "slightly roomy, might size down next time",
            "the fit is ok, a little snug in places",
        ],
    ),
    "cushioning": aspect(
        "cushioning",
        [
            "the cushioning still feels springy after 100 miles",
            "plenty of cushioning for long sessions",
            "soft and supportive",
        ],
        [
            "the cushioning flattened out after two weeks",
            "feels like standing on concrete",
            "way too thin to be useful",
        ],
        [
            "the cushioning is on the firmer side",
            "medium cushioning, not super soft",
        ],
    ),
    "grip": aspect(
        "grip",
        [
            "the grip is solid even when wet",
            "doesn't slip at all",
        ],
        [
            "slippery as soon as it gets wet",
            "no grip whatsoever",
            "I slipped twice the first week",
        ],
        [
            "grip is ok when dry",
            "grip is average, a bit slick when new",
        ],
    ),
    "durability": aspect(
        "durability",
        [
            "still holding up after six months of daily use",
            "no signs of wear after heavy use",
        ],
        [
            "fell apart after a month",
            "the stitching came undone within weeks",
            "started cracking after a few uses",
        ],
        [
            "too early to say how it holds up",
            "some light wear after a month, nothing major",
            "we'll see how long it lasts",
        ],
    ),
}
