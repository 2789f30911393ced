"""Deterministic synthetic scraped product reviews with sentiment labels, and a drop writer."""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL_WEIGHTS: dict[str, float] = {"negative": 0.31, "neutral": 0.29, "positive": 0.40}
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "negative": ("refund", "broken", "waste of money"),
    "positive": ("love", "excellent", "perfect"),
}
FIELDS: tuple[str, ...] = ("id", "text", "rating", "product", "url", "scraped_at", "gold_label")
DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)
FORMATS: dict[str, str] = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}

_CUE_RATE = {"negative": 0.5, "neutral": 0.1, "positive": 0.5}


@dataclass(frozen=True)
class _Aspect:
    name: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    neu: tuple[str, ...]


@dataclass(frozen=True)
class _Category:
    noun: str
    plural: bool
    aspects: tuple[str, ...]
    uses: tuple[str, ...]
    products: tuple[str, ...]


def _a(name: str, pos: list[str], neg: list[str], neu: list[str]) -> _Aspect:
    return _Aspect(name, tuple(pos), tuple(neg), tuple(neu))


_ASPECTS: dict[str, _Aspect] = {
    "price": _a(
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
    "delivery": _a(
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
    "packaging": _a(
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
    "customer_service": _a(
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
    "build_quality": _a(
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
    "instructions": _a(
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
    "sound": _a(
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
    "battery": _a(
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
    "comfort": _a(
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
    "noise_cancelling": _a(
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
    "connectivity": _a(
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
    "mic": _a(
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
    "motor_power": _a(
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
    "noise": _a(
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
    "blades": _a(
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
    "cleaning": _a(
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
    "smell": _a(
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
    "capacity": _a(
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
    "fit": _a(
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
    "cushioning": _a(
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
    "grip": _a(
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
    "durability": _a(
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
    "buttons": _a(
        "buttons",
        [
            "the buttons are clicky and responsive",
            "the buttons are easy to press",
        ],
        [
            "the buttons are mushy and hard to press",
            "one button stopped working after a week",
            "the side buttons stick",
        ],
        [
            "the buttons take a little getting used to",
            "buttons are a bit stiff but work",
        ],
    ),
    "protection": _a(
        "protection",
        [
            "survived a drop onto tile without a scratch",
            "gives solid protection without the bulk",
        ],
        [
            "the corners cracked on the first drop",
            "my screen cracked inside the case",
        ],
        [
            "haven't dropped it yet so can't comment on protection",
            "adds a bit of bulk, protection seems ok",
        ],
    ),
    "discoloration": _a(
        "color",
        [
            "still crystal clear, no yellowing",
            "the color hasn't faded at all",
        ],
        [
            "turned yellow within a month",
            "the clear back went cloudy fast",
        ],
        [
            "slight tint after a few weeks",
            "the color is a little darker than in the photos",
        ],
    ),
    "brightness": _a(
        "brightness",
        [
            "bright enough to light up my whole desk",
            "the brightness goes really low, which is nice at night",
        ],
        [
            "too dim even on the highest setting",
            "the brightness drops after 10 minutes",
        ],
        [
            "brightness is fine for reading",
            "it has five brightness levels",
        ],
    ),
    "color": _a(
        "light color",
        [
            "the warm light setting is easy on the eyes",
            "the light color is really pleasant",
        ],
        [
            "the light has an ugly blue tint",
            "the warm setting looks green",
        ],
        [
            "three color temperatures, warm is the most usable",
            "the light is a little cooler than I expected",
        ],
    ),
    "flicker": _a(
        "flicker",
        [
            "no flicker at all, even on video calls",
        ],
        [
            "it flickers constantly on the lowest setting",
            "the flicker gives me a headache",
        ],
        [
            "slight flicker only on the lowest setting",
        ],
    ),
    "stability": _a(
        "base",
        [
            "the base is heavy and stable",
        ],
        [
            "it tips over if you touch the arm",
            "wobbles all over the place",
        ],
        [
            "the base is a bit light but ok",
            "takes up a fair amount of desk space",
        ],
    ),
    "controls": _a(
        "controls",
        [
            "the touch controls are intuitive",
            "the controls are simple and work every time",
        ],
        [
            "the touch controls are way too sensitive",
            "the controls randomly stop responding",
        ],
        [
            "the controls are touch only",
            "took a minute to figure out the controls",
        ],
    ),
    "taste": _a(
        "taste",
        [
            "coffee comes out hot and tastes rich",
            "makes a really smooth cup",
        ],
        [
            "the coffee tastes burnt every time",
            "the coffee comes out lukewarm and watery",
        ],
        [
            "coffee tastes about the same as my old machine",
            "coffee is hot, taste is fine",
        ],
    ),
    "brew_speed": _a(
        "brew time",
        [
            "brews a full pot in a few minutes",
        ],
        [
            "takes forever to brew a single cup",
        ],
        [
            "a full pot takes about ten minutes",
        ],
    ),
    "zippers": _a(
        "zippers",
        [
            "the zippers are smooth and feel heavy duty",
        ],
        [
            "a zipper split on the second day",
            "the zippers snag constantly",
        ],
        [
            "the zippers are ok, a bit stiff",
        ],
    ),
    "straps": _a(
        "straps",
        [
            "the straps are well padded, even with a full load",
        ],
        [
            "one strap tore at the seam",
            "the straps dig into my shoulders",
        ],
        [
            "the straps are adjustable but thin",
        ],
    ),
    "pockets": _a(
        "pockets",
        [
            "tons of pockets and the laptop sleeve fits my 15 inch",
        ],
        [
            "the laptop sleeve is too small for a 15 inch",
            "the pockets are oddly shaped and useless",
        ],
        [
            "has a laptop sleeve and two side pockets",
        ],
    ),
    "water_resistance": _a(
        "water resistance",
        [
            "stayed dry through a downpour",
        ],
        [
            "everything inside got wet in light rain",
            "water got in after one shower",
        ],
        [
            "says water resistant, haven't tested it in rain",
        ],
    ),
    "boil_speed": _a(
        "boil time",
        ["boils water in about two minutes"],
        ["takes ages to boil"],
        ["boils a full kettle in around four minutes"],
    ),
    "lid": _a(
        "lid",
        ["the lid opens with one hand"],
        ["the lid doesn't close properly and leaks", "the lid hinge snapped"],
        ["the lid is a push button type"],
    ),
    "auto_shutoff": _a(
        "auto shutoff",
        ["shuts off right when it boils"],
        ["the auto shutoff doesn't work, it kept boiling dry"],
        ["has auto shutoff and a keep warm mode"],
    ),
    "cooking": _a(
        "cooking",
        ["fries come out crispy without any oil", "cooks chicken evenly every time"],
        ["food comes out soggy on one side", "cooks unevenly no matter what"],
        [
            "cook times are a bit different from the recipes",
            "works about like an oven, just faster",
        ],
    ),
    "basket": _a(
        "basket",
        ["the basket slides out smoothly"],
        ["the nonstick coating on the basket is flaking"],
        ["the basket is a bit small for a family"],
    ),
    "key_feel": _a(
        "keys",
        ["the keys feel crisp and satisfying"],
        ["the keys feel scratchy and some stick", "a few keys double type"],
        ["the switches are linear, a bit lighter than I expected"],
    ),
    "rgb": _a(
        "backlight",
        ["the backlight looks really nice at night"],
        ["half the backlight LEDs died"],
        ["the backlight has a few modes, software is basic"],
    ),
    "tracking": _a(
        "tracking",
        ["tracking is smooth on any surface"],
        ["the cursor jumps around randomly"],
        ["tracking is fine on a mousepad"],
    ),
    "ergonomics": _a(
        "shape",
        ["fits my hand nicely, no wrist strain"],
        ["too small, my hand cramps after an hour"],
        ["it's on the small side, better for small hands"],
    ),
    "tracking_accuracy": _a(
        "tracking",
        ["step count and heart rate match my chest strap"],
        ["heart rate readings are all over the place", "it counts steps while I'm driving"],
        ["step count is within a few hundred of my phone"],
    ),
    "app": _a(
        "app",
        ["the app is simple and syncs fast"],
        ["the app crashes constantly", "the app wants way too many permissions"],
        ["you need the app for most settings", "the app requires an account"],
    ),
    "screen": _a(
        "screen",
        ["the screen is bright and readable in sunlight"],
        ["the screen scratched within days", "the screen is unreadable outdoors"],
        ["the screen is fine indoors, a bit dim outside"],
    ),
    "strap": _a(
        "strap",
        ["the strap is soft and doesn't irritate"],
        ["the strap gave me a rash", "the strap clasp keeps popping open"],
        ["the strap is a standard size, easy to swap"],
    ),
    "volume": _a(
        "volume",
        ["gets loud enough for a backyard party"],
        ["max volume is barely louder than my phone"],
        ["volume is fine for a small room"],
    ),
    "suction": _a(
        "suction",
        ["picks up all the dog hair"],
        ["leaves crumbs everywhere", "suction is weak on carpet"],
        ["suction is fine on hard floors, average on carpet"],
    ),
    "navigation": _a(
        "navigation",
        ["maps the whole floor and never gets stuck"],
        ["gets stuck under the couch every single day", "keeps bumping into the same chair leg"],
        ["navigation looks random, but it gets there eventually"],
    ),
    "assembly": _a(
        "assembly",
        ["assembly took 15 minutes and all the holes lined up"],
        ["the holes didn't line up and a screw was missing"],
        ["assembly takes about half an hour with two people"],
    ),
    "armrests": _a(
        "armrests",
        ["the armrests adjust in every direction"],
        ["the armrests wobble"],
        ["the armrests go up and down but not sideways"],
    ),
    "wheels": _a(
        "wheels",
        ["the wheels roll smoothly on carpet"],
        ["a wheel snapped off in the first week"],
        ["the wheels are a bit loud on hardwood"],
    ),
    "softness": _a(
        "fabric",
        ["super soft and softer with each wash"],
        ["scratchy like sandpaper"],
        ["softer than cotton, not as soft as silk"],
    ),
    "washing": _a(
        "washing",
        ["no shrinking or pilling after many washes"],
        ["pilled after the first wash", "shrank a full size in the dryer"],
        ["they wrinkle a bit out of the dryer"],
    ),
    "leaks": _a(
        "seal",
        ["doesn't leak even upside down in my bag"],
        ["leaks all over my bag"],
        ["only leaks if the lid isn't screwed on fully"],
    ),
    "insulation": _a(
        "insulation",
        ["keeps ice for a whole day"],
        ["coffee is lukewarm after an hour"],
        ["keeps drinks cold for most of the afternoon"],
    ),
}

_GENERIC_ASPECTS = (
    "price",
    "delivery",
    "packaging",
    "customer_service",
    "build_quality",
    "instructions",
)

_NO_CUE_ASPECTS = frozenset({"smell", "noise", "flicker"})

_CATEGORIES: dict[str, _Category] = {
    "headphones": _Category(
        "headphones",
        True,
        ("sound", "battery", "comfort", "noise_cancelling", "connectivity", "mic"),
        ("my commute", "the gym", "long flights", "work calls"),
        (
            "Aurora ANC-300 Wireless Headphones",
            "Sonique Studio Over-Ear Headphones",
            "Kestrel Q2 Bluetooth Headphones",
        ),
    ),
    "earbuds": _Category(
        "earbuds",
        True,
        ("sound", "battery", "fit", "connectivity", "mic"),
        ("running", "my commute", "work calls"),
        ("Pebble Buds Pro", "Vanta TWS-9 Earbuds", "Kestrel Mini Earbuds"),
    ),
    "blender": _Category(
        "blender",
        False,
        ("motor_power", "noise", "blades", "cleaning", "smell", "capacity"),
        ("smoothies", "protein shakes", "soups"),
        ("Blendo Max 1200W Blender", "VitaSpin Personal Blender", "Cuisino Pro Countertop Blender"),
    ),
    "running_shoes": _Category(
        "shoes",
        True,
        ("fit", "cushioning", "grip", "durability", "smell"),
        ("half marathon training", "daily runs", "trail running"),
        ("Stride Velo 3 Running Shoes", "Trailhawk GTX Trail Runners", "Nimbo Cloud Runner"),
    ),
    "phone_case": _Category(
        "case",
        False,
        ("fit", "grip", "buttons", "protection", "discoloration"),
        ("my new phone", "everyday use"),
        ("ArmorLite Clear Case", "GripShell Rugged Phone Case", "SlimFit MagSafe Case"),
    ),
    "desk_lamp": _Category(
        "lamp",
        False,
        ("brightness", "color", "flicker", "stability", "controls"),
        ("late night reading", "my home office", "sketching"),
        ("Lumio LED Desk Lamp", "Arcline Architect Lamp", "Glowbar Clamp Lamp"),
    ),
    "coffee_maker": _Category(
        "coffee maker",
        False,
        ("taste", "brew_speed", "noise", "smell", "cleaning"),
        ("my morning coffee", "the office kitchen"),
        ("BrewHaus 12-Cup Drip Coffee Maker", "Crema One Pod Machine", "Pourfect Pour Over Kit"),
    ),
    "backpack": _Category(
        "backpack",
        False,
        ("zippers", "straps", "pockets", "water_resistance", "durability"),
        ("commuting", "a two week trip", "school"),
        ("Nomad 28L Travel Backpack", "UrbanPack Commuter Bag", "Ridgeline Daypack"),
    ),
    "kettle": _Category(
        "kettle",
        False,
        ("boil_speed", "noise", "smell", "lid", "auto_shutoff"),
        ("tea", "pour over coffee", "the dorm"),
        ("Steamly Electric Kettle", "Glassware Gooseneck Kettle", "BoilRight 1.7L Kettle"),
    ),
    "air_fryer": _Category(
        "air fryer",
        False,
        ("cooking", "basket", "cleaning", "smell", "capacity", "noise"),
        ("weeknight dinners", "frozen snacks", "a family of four"),
        ("CrispAir 5.8QT Air Fryer", "Fryo Dual Basket Air Fryer", "HotWave Compact Air Fryer"),
    ),
    "keyboard": _Category(
        "keyboard",
        False,
        ("key_feel", "noise", "connectivity", "rgb", "battery"),
        ("coding", "gaming", "work"),
        ("Clackboard TKL Mechanical Keyboard", "Keyra 75 Wireless Keyboard", "Typhon RGB Keyboard"),
    ),
    "mouse": _Category(
        "mouse",
        False,
        ("tracking", "battery", "connectivity", "ergonomics", "buttons"),
        ("work", "gaming", "travel"),
        ("Glide M3 Wireless Mouse", "Ergonix Vertical Mouse", "Zip Silent Click Mouse"),
    ),
    "yoga_mat": _Category(
        "mat",
        False,
        ("grip", "cushioning", "smell", "durability"),
        ("hot yoga", "home workouts", "pilates"),
        ("ZenFlow 6mm Yoga Mat", "GripMat Pro", "Lotus Eco Cork Mat"),
    ),
    "water_bottle": _Category(
        "bottle",
        False,
        ("leaks", "insulation", "lid", "cleaning"),
        ("the gym", "hiking", "my desk"),
        ("HydroKeep 32oz Bottle", "Summit Steel Flask", "Sipwell Kids Bottle"),
    ),
    "smartwatch": _Category(
        "watch",
        False,
        ("battery", "tracking_accuracy", "app", "screen", "strap"),
        ("tracking runs", "sleep tracking", "notifications"),
        ("Pulse Fit 4 Smartwatch", "Chrono Active GPS Watch", "Vivo Band Lite"),
    ),
    "speaker": _Category(
        "speaker",
        False,
        ("sound", "battery", "connectivity", "water_resistance", "volume"),
        ("the beach", "the shower", "parties"),
        ("Boomcube Portable Speaker", "Sonique Go Mini", "WaveRock Outdoor Speaker"),
    ),
    "robot_vacuum": _Category(
        "vacuum",
        False,
        ("suction", "navigation", "noise", "app", "battery"),
        ("pet hair", "a small apartment", "hardwood floors"),
        ("RoboSweep S7 Robot Vacuum", "Dustin Mapping Vacuum", "Cleanbot Lite"),
    ),
    "office_chair": _Category(
        "chair",
        False,
        ("comfort", "assembly", "armrests", "wheels", "durability"),
        ("my home office", "long gaming sessions", "working from home"),
        ("ErgoSeat Mesh Office Chair", "Throne Pro Gaming Chair", "Posture Task Chair"),
    ),
    "bed_sheets": _Category(
        "sheets",
        True,
        ("softness", "washing", "fit", "smell"),
        ("our guest room", "a queen bed", "hot summer nights"),
        ("Cloudrest Bamboo Sheet Set", "Linenly Percale Sheets", "Dreamweave Microfiber Sheets"),
    ),
}

_PRODUCTS: tuple[tuple[str, str], ...] = tuple(
    (key, name) for key, cat in _CATEGORIES.items() for name in cat.products
)
_DOMAINS = (
    "shop.example.com",
    "www.example-mart.test",
    "reviews.example.org",
    "m.bigbox.example",
)

_WRAP = {
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

_OPENERS_CONTEXT = (
    "Bought {item} for {use}.",
    "Got {item} on sale last week.",
    "Ordered {item} to replace my old one.",
    "Been using {item} for about {duration} now.",
    "Picked this up after reading a bunch of reviews.",
    "My {person} recommended {item}.",
    "Update after {duration}:",
    "First review here.",
)
_OPENERS = {
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
_CLOSERS = {
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
_FACTS = (
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
_STARS = {
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
_MIXED = {
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
_CUES = {
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
_SHORT = {
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
_SHORT_CUES = {
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
_SHORT_TAILS = ("", "", ".", "!", " so far", " tbh", " for the price", "...", " overall", " imo")
_EMOJI = {
    "positive": ("😍", "👍", "🔥", "✨", "🙌", "😊", "👌"),
    "negative": ("😡", "👎", "😤", "💀", "🙄", "😞"),
    "neutral": ("🤷", "🤔", "📦", "😐"),
}
_SLOTS = {
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"),
    "duration": ("two weeks", "a month", "three days", "six months", "a year", "10 days"),
    "person": ("sister", "coworker", "roommate", "dad", "wife", "husband", "mom"),
    "variant": ("black", "white", "grey", "navy", "large", "medium", "2-pack"),
}
_RATINGS = {"positive": (5, 5, 5, 4, 4), "negative": (1, 1, 1, 2, 2), "neutral": (3, 3, 3, 2, 4)}
_SWAPS = {
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
_FILLERS = ("really", "very", "just", "so", "actually", "honestly")
_TRACKERS = (
    '<script>window.dataLayer=window.dataLayer||[];dataLayer.push({"event":"review_view"});'
    "</script>",
    '<script type="text/javascript">var _rt={pid:"{pid}",t:Date.now()};</script>',
    '<script async src="https://cdn.tracker.example/px.js?id=rv"></script>',
)
_STYLES = (
    "<style>.review-text{font-size:14px;line-height:1.4}</style>",
    '<style type="text/css">.a-icon-star{display:none}</style>',
)
_WRAPPERS = (
    "<p>{}</p>",
    '<span class="review-text">{}</span>',
    '<div class="review-body" data-hook="review-body"><span>{}</span></div>',
    '<span class="a-size-base review-text-content">{}</span>',
    "<p>{}</p><p></p>",
    "{}",
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _slots(rng: random.Random, cat: _Category) -> dict[str, str]:
    if cat.plural:
        item = rng.choice((f"the {cat.noun}", f"these {cat.noun}"))
        it, be, it_be = "they", "are", "they're"
    else:
        item = rng.choice((f"the {cat.noun}", f"this {cat.noun}"))
        it, be, it_be = "it", "is", "it's"
    out = {"item": item, "it": it, "be": be, "it_be": it_be, "noun": cat.noun}
    out["use"] = rng.choice(cat.uses)
    for key, values in _SLOTS.items():
        out[key] = rng.choice(values)
    return out


@dataclass
class _Ctx:
    rng: random.Random
    cat: _Category
    clauses: set[str] = field(default_factory=set)
    polarity: dict[str, str] = field(default_factory=dict)
    wraps: set[str] = field(default_factory=set)

    def cue_aspect(self, label: str) -> str:
        pool = [a for a in self.cat.aspects if a not in _NO_CUE_ASPECTS]
        aspect = _ASPECTS[self.rng.choice(pool)]
        for _ in range(6):
            if self.polarity.get(aspect.name, label) == label:
                break
            aspect = _ASPECTS[self.rng.choice(pool)]
        self.polarity[aspect.name] = label
        return aspect.name

    def pick(self) -> _Aspect:
        pool = self.cat.aspects if self.rng.random() < 0.72 else _GENERIC_ASPECTS
        return _ASPECTS[self.rng.choice(pool)]

    def clause(self, label: str) -> str:
        clause = ""
        for _ in range(8):
            aspect = self.pick()
            pool = {"positive": aspect.pos, "negative": aspect.neg, "neutral": aspect.neu}[label]
            clause = self.rng.choice(pool)
            if clause not in self.clauses and self.polarity.get(aspect.name, label) == label:
                break
        self.clauses.add(clause)
        self.polarity[aspect.name] = label
        return clause

    def wrap(self, label: str) -> str:
        wrap = self.rng.choice(_WRAP[label])
        if wrap in self.wraps:
            wrap = "{c}."
        self.wraps.add(wrap)
        return wrap


def _aspect_sentence(ctx: _Ctx, label: str) -> str:
    clause = ctx.clause(label)
    return _cap(ctx.wrap(label).format(c=clause))


def _mixed_sentence(ctx: _Ctx, label: str) -> str:
    p = ctx.clause("positive")
    n = ctx.clause("negative")
    return _cap(ctx.rng.choice(_MIXED[label]).format(p=p, n=n))


def _cue_sentence(ctx: _Ctx, label: str) -> str:
    template = ctx.rng.choice(_CUES[label])
    if "{aspect}" in template:
        template = template.replace("{aspect}", ctx.cue_aspect("positive"))
    if "{n}" in template:
        template = template.replace("{n}", ctx.clause("negative"))
    return template


def _body(rng: random.Random, cat: _Category, label: str, cue: bool) -> list[str]:
    if rng.random() < 0.035:
        pool = _SHORT_CUES[label] if cue else _SHORT[label]
        return [rng.choice(pool) + rng.choice(_SHORT_TAILS)]
    long = rng.random() < 0.18
    parts: list[str] = []
    ctx = _Ctx(rng, cat)
    if rng.random() < (0.85 if long else 0.35):
        openers = _OPENERS_CONTEXT + _OPENERS[label]
        parts.append(rng.choice(openers))
    n_aspects = rng.randint(3, 6) if long else rng.choice((1, 1, 2, 2, 3))
    if label == "neutral":
        kind = rng.random()
        if kind < 0.4:
            parts.append(rng.choice(_FACTS))
            n_aspects = max(0, n_aspects - 1)
        elif kind < 0.75:
            parts.append(_mixed_sentence(ctx, label))
            n_aspects = max(0, n_aspects - 1)
        for _ in range(n_aspects):
            parts.append(_aspect_sentence(ctx, label))
        if long and rng.random() < 0.6:
            parts.insert(rng.randint(0, len(parts)), rng.choice(_FACTS))
    else:
        for _ in range(n_aspects):
            parts.append(_aspect_sentence(ctx, label))
        if rng.random() < (0.35 if long else 0.15):
            parts.insert(rng.randint(0, len(parts)), _mixed_sentence(ctx, label))
    if cue:
        parts.insert(rng.randint(0, len(parts)), _cue_sentence(ctx, label))
    if rng.random() < 0.25:
        parts.append(rng.choice(_STARS[label]))
    if rng.random() < (0.7 if long else 0.3):
        parts.append(rng.choice(_CLOSERS[label]))
    return parts


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("asdfghjklqwertyuiop") + word[i + 1 :]


def _style(rng: random.Random, text: str, label: str) -> str:
    if rng.random() < 0.12:
        words = text.split(" ")
        for _ in range(rng.randint(1, 2)):
            j = rng.randrange(len(words))
            words[j] = _typo(rng, words[j])
        text = " ".join(words)
    if rng.random() < 0.12:
        text = text.lower()
        if rng.random() < 0.5:
            text = text.replace("'", "")
    if rng.random() < 0.1 and text[-1:] in ".!":
        text = text[:-1]
    if label == "positive" and rng.random() < 0.08:
        text = text.rstrip(".!") + "!!"
    if rng.random() < 0.1:
        emoji = rng.choice(_EMOJI[label])
        text = f"{text} {emoji * rng.choice((1, 1, 2, 3))}"
    return text


def _render(rng: random.Random, cat: _Category, label: str) -> str:
    cue = rng.random() < _CUE_RATE[label]
    slots = _slots(rng, cat)
    body = _body(rng, cat, label, cue)
    parts = [_cap(p.format_map(slots)) if p[:1] == "{" else p.format_map(slots) for p in body]
    if len(parts) > 4 and rng.random() < 0.6:
        cut = rng.randint(2, len(parts) - 2)
        text = " ".join(parts[:cut]) + "\n\n" + " ".join(parts[cut:])
    else:
        text = " ".join(parts)
    return _style(rng, text, label)


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def _htmlify(rng: random.Random, text: str) -> str:
    body = text.replace("\n\n", rng.choice(("<br/><br/>", "</p><p>", "<br>\n<br>")))
    if rng.random() < 0.35:
        body = re.sub(r"(?<=[.!?]) (?=\S)", rng.choice(("<br/>", "<br>", "<br />")), body, count=2)
    if rng.random() < 0.3:
        words = body.split(" ")
        j = rng.randrange(len(words))
        if words[j] and "<" not in words[j]:
            words[j] = rng.choice(("<b>{}</b>", "<strong>{}</strong>", "<i>{}</i>")).format(
                words[j]
            )
        body = " ".join(words)
    if rng.random() < 0.5:
        body = body.replace("'", "&#39;").replace('"', "&quot;")
    if rng.random() < 0.4:
        body = body.replace(" and ", " &amp; ", 1)
    if rng.random() < 0.3:
        spaces = [m.start() for m in re.finditer(" ", body)]
        if spaces:
            k = rng.choice(spaces)
            body = body[:k] + "&nbsp;" + body[k + 1 :]
    wrapped = rng.choice(_WRAPPERS).format(body)
    r = rng.random()
    if r < 0.07:
        tracker = rng.choice(_TRACKERS).replace("{pid}", str(rng.randrange(10**6)))
        wrapped = wrapped + tracker if rng.random() < 0.7 else tracker + wrapped
    elif r < 0.11:
        wrapped = rng.choice(_STYLES) + wrapped
    if "<" not in wrapped:
        wrapped = f"<p>{wrapped}</p>"
    return wrapped


def _garble(rng: random.Random, text: str) -> str:
    if rng.random() < 0.6:
        text = rng.choice(("  ", "\n", " \n\t", "\t", "")) + text + rng.choice(("  ", "\n  ", " "))
        if rng.random() < 0.5:
            text = text.replace(" ", "   ", 1)
    if rng.random() < 0.3:
        words = text.split(" ")
        j = rng.randrange(len(words))
        words[j] = _fullwidth(words[j])
        text = " ".join(words)
    if rng.random() < 0.4 or text.strip() == text:
        k = rng.randrange(len(text) + 1)
        text = text[:k] + rng.choice(("\u200b", "\u200b", "\ufeff", "\u200c")) + text[k:]
    return text


def _noisy(rng: random.Random, text: str) -> str:
    if rng.random() < 0.85:
        text = _htmlify(rng, text)
        if rng.random() < 0.35:
            text = _garble(rng, text)
        return text
    return _garble(rng, text)


def _near_duplicate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(8):
        op = rng.randrange(3)
        if op == 0:
            idx = [i for i, w in enumerate(words) if w.lower() in _SWAPS]
            if idx:
                i = rng.choice(idx)
                new = _SWAPS[words[i].lower()]
                out = words[:i] + [_cap(new) if words[i][:1].isupper() else new] + words[i + 1 :]
                return " ".join(out)
        elif op == 1:
            idx = [i for i, w in enumerate(words) if w.lower() in _FILLERS]
            if idx and len(words) > 1:
                i = rng.choice(idx)
                return " ".join(words[:i] + words[i + 1 :])
        else:
            stripped = text.rstrip()
            tail = text[len(stripped) :]
            if stripped.endswith("."):
                return stripped[:-1] + rng.choice(("!", "", "..")) + tail
            if stripped.endswith("!"):
                return stripped + "!" + tail
            return stripped + "." + tail
    return text + "."


def _rating(rng: random.Random, label: str) -> int | None:
    if rng.random() < 0.12:
        return None
    if rng.random() < 0.03:
        return rng.randint(1, 5)
    return rng.choice(_RATINGS[label])


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _url(rng: random.Random, product_index: int, cat_key: str, name: str) -> str:
    domain = _DOMAINS[product_index % len(_DOMAINS)]
    sku = f"B0{(product_index * 7919) % 10**6:06d}"
    page = rng.randint(1, 40)
    return f"https://{domain}/{cat_key.replace('_', '-')}/{_slug(name)}-{sku}/reviews?page={page}"


def _fresh(rng: random.Random) -> dict[str, Any]:
    label = rng.choices(LABELS, weights=[LABEL_WEIGHTS[lb] for lb in LABELS])[0]
    product_index = rng.randrange(len(_PRODUCTS))
    cat_key, name = _PRODUCTS[product_index]
    cat = _CATEGORIES[cat_key]
    return {
        "text": _render(rng, cat, label),
        "rating": _rating(rng, label),
        "product": name,
        "url": _url(rng, product_index, cat_key, name),
        "gold_label": label,
    }


def _as_datetime(value: datetime | str | None) -> datetime:
    if value is None:
        return DEFAULT_START
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _generate(
    rng: random.Random,
    n: int,
    *,
    offset: int,
    total: int,
    html_rate: float,
    duplicate_rate: float,
    near_duplicate_rate: float,
    id_prefix: str,
    start: datetime,
    span_days: float,
) -> list[dict[str, Any]]:
    width = max(7, len(str(max(total - 1, 0))))
    span = timedelta(days=span_days)
    out: list[dict[str, Any]] = []
    for i in range(n):
        r = rng.random()
        if out and r < duplicate_rate:
            rec = dict(rng.choice(out))
        elif out and r < duplicate_rate + near_duplicate_rate:
            rec = dict(rng.choice(out))
            rec["text"] = _near_duplicate(rng, rec["text"])
        else:
            rec = _fresh(rng)
            if rng.random() < html_rate:
                rec["text"] = _noisy(rng, rec["text"])
        g = offset + i
        when = start + span * ((g + rng.random()) / max(total, 1))
        out.append(
            {
                "id": f"{id_prefix}{g:0{width}d}",
                "text": rec["text"],
                "rating": rec["rating"],
                "product": rec["product"],
                "url": rec["url"],
                "scraped_at": when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                "gold_label": rec["gold_label"],
            }
        )
    return out


def generate_reviews(
    n: int,
    *,
    seed: int = 0,
    html_rate: float = 0.25,
    duplicate_rate: float = 0.04,
    near_duplicate_rate: float = 0.03,
    id_prefix: str = "r",
    start: datetime | str | None = None,
    span_days: float = 7.0,
) -> list[dict[str, Any]]:
    """`n` seeded synthetic scraped reviews with a `gold_label` (negative/neutral/positive).

    `html_rate` is the share with scraping noise; duplicates re-use an earlier record's text under
    a new id (exact, or one word/punctuation changed). `scraped_at` spans `span_days` from `start`.
    """
    return _generate(
        random.Random(seed),
        n,
        offset=0,
        total=n,
        html_rate=html_rate,
        duplicate_rate=duplicate_rate,
        near_duplicate_rate=near_duplicate_rate,
        id_prefix=id_prefix,
        start=_as_datetime(start),
        span_days=span_days,
    )


def iter_reviews(
    n: int, *, seed: int = 0, chunk_size: int = 10_000, **kw: Any
) -> Iterator[list[dict[str, Any]]]:
    """`n` reviews as lists of at most `chunk_size`, in bounded memory.

    Each chunk has its own RNG derived from `seed`, so duplicates refer within a chunk; ids and
    timestamps run on across chunks. Keywords as `generate_reviews`.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    opts: dict[str, Any] = {
        "html_rate": 0.25,
        "duplicate_rate": 0.04,
        "near_duplicate_rate": 0.03,
        "id_prefix": "r",
        "span_days": 7.0,
    }
    unknown = set(kw) - set(opts) - {"start"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    opts.update(kw)
    opts["start"] = _as_datetime(kw.get("start"))
    for k, offset in enumerate(range(0, n, chunk_size)):
        rng = random.Random(seed if k == 0 else f"{seed}/{k}")
        yield _generate(rng, min(chunk_size, n - offset), offset=offset, total=n, **opts)


def _broken_json(rng: random.Random, rec: dict[str, Any]) -> str:
    line = json.dumps(rec, ensure_ascii=False)
    return line[: rng.randint(min(10, len(line) - 1), len(line) - 2)]


def _broken_csv(rng: random.Random, row: list[str]) -> str:
    row = [v.replace("\n", " ") for v in row]
    if rng.random() < 0.35:
        text = row[1].replace('"', "")
        text = text[: max(1, rng.randint(len(text) // 2, len(text)))]
        return ",".join([row[0], '"' + text, *row[2:]])
    if rng.random() < 0.5:
        short = row[: rng.randint(1, len(row) - 1)]
    else:
        short = row + ["", "extra"][: rng.randint(1, 2)]
    return ",".join(_csv_field(v) for v in short)


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _row_values(rec: dict[str, Any], columns: list[str]) -> list[str]:
    return ["" if rec.get(c) is None else str(rec[c]) for c in columns]


def _write_part(
    path: Path,
    fmt: str,
    rows: list[dict[str, Any]],
    breaks: dict[int, int],
    columns: list[str],
    rng: random.Random,
) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"rating": pa.int64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)
        pq.write_table(table, path)
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(columns)
        for i, rec in enumerate(rows):
            for _ in range(breaks.get(i, 0)):
                if fmt == "jsonl":
                    fh.write(_broken_json(rng, rec) + "\n")
                else:
                    fh.write(_broken_csv(rng, _row_values(rec, columns)) + "\n")
            if fmt == "jsonl":
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                writer.writerow(_row_values(rec, columns))


def write_drop(
    folder: Path,
    records: Iterable[dict[str, Any]],
    *,
    fmt: str = "jsonl",
    include_gold: bool = False,
    broken_lines: int = 0,
    file_rows: int = 50_000,
    seed: int = 0,
) -> list[Path]:
    """Write records as `part-NNNNN.<fmt>` files of `file_rows` each, then an empty `_SUCCESS`.

    `broken_lines` malformed lines go before seeded records (anywhere in a sized collection, in
    the first file otherwise; not for parquet). Returns the record files written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    if file_rows <= 0:
        raise ValueError("file_rows must be positive")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"write_drop/{seed}")
    columns = [c for c in FIELDS if include_gold or c != "gold_label"]
    n_broken = 0 if fmt == "parquet" else max(0, broken_lines)
    positions: list[int] | None = None
    if n_broken and isinstance(records, Sized) and len(records) > 0:
        positions = sorted(rng.randrange(len(records)) for _ in range(n_broken))
    it = iter(records)
    paths: list[Path] = []
    offset = 0
    while True:
        chunk = list(islice(it, file_rows))
        if not chunk:
            break
        rows = [{k: v for k, v in r.items() if include_gold or k != "gold_label"} for r in chunk]
        if positions is None and n_broken and offset == 0:
            positions = sorted(rng.randrange(len(rows)) for _ in range(n_broken))
        breaks: dict[int, int] = {}
        for p in positions or ():
            if offset <= p < offset + len(rows):
                breaks[p - offset] = breaks.get(p - offset, 0) + 1
        path = folder / f"part-{len(paths):05d}{FORMATS[fmt]}"
        _write_part(path, fmt, rows, breaks, columns, rng)
        paths.append(path)
        offset += len(rows)
    (folder / "_SUCCESS").write_bytes(b"")
    return paths
