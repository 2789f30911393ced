"""Review clauses per product aspect, second part: phone cases, desk lamps, coffee makers,
backpacks, then the short lists of the remaining categories (kettles ... water bottles)."""

from __future__ import annotations

from tools.synthetic.model import Aspect, aspect

MORE_ASPECTS: dict[str, Aspect] = {
    "buttons": aspect(
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
    "protection": aspect(
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
    "discoloration": aspect(
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
    "brightness": aspect(
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
    "color": aspect(
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
    "flicker": aspect(
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
    "stability": aspect(
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
    "controls": aspect(
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
    "taste": aspect(
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
    "brew_speed": aspect(
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
    "zippers": aspect(
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
    "straps": aspect(
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
    "pockets": aspect(
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
    "water_resistance": aspect(
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
    "boil_speed": aspect(
        "boil time",
        ["boils water in about two minutes"],
        ["takes ages to boil"],
        ["boils a full kettle in around four minutes"],
    ),
    "lid": aspect(
        "lid",
        ["the lid opens with one hand"],
        ["the lid doesn't close properly and leaks", "the lid hinge snapped"],
        ["the lid is a push button type"],
    ),
    "auto_shutoff": aspect(
        "auto shutoff",
        ["shuts off right when it boils"],
        ["the auto shutoff doesn't work, it kept boiling dry"],
        ["has auto shutoff and a keep warm mode"],
    ),
    "cooking": aspect(
        "cooking",
        ["fries come out crispy without any oil", "cooks chicken evenly every time"],
        ["food comes out soggy on one side", "cooks unevenly no matter what"],
        [
            "cook times are a bit different from the recipes",
            "works about like an oven, just faster",
        ],
    ),
    "basket": aspect(
        "basket",
        ["the basket slides out smoothly"],
        ["the nonstick coating on the basket is flaking"],
        ["the basket is a bit small for a family"],
    ),
    "key_feel": aspect(
        "keys",
        ["the keys feel crisp and satisfying"],
        ["the keys feel scratchy and some stick", "a few keys double type"],
        ["the switches are linear, a bit lighter than I expected"],
    ),
    "rgb": aspect(
        "backlight",
        ["the backlight looks really nice at night"],
        ["half the backlight LEDs died"],
        ["the backlight has a few modes, software is basic"],
    ),
    "tracking": aspect(
        "tracking",
        ["tracking is smooth on any surface"],
        ["the cursor jumps around randomly"],
        ["tracking is fine on a mousepad"],
    ),
    "ergonomics": aspect(
        "shape",
        ["fits my hand nicely, no wrist strain"],
        ["too small, my hand cramps after an hour"],
        ["it's on the small side, better for small hands"],
    ),
    "tracking_accuracy": aspect(
        "tracking",
        ["step count and heart rate match my chest strap"],
        ["heart rate readings are all over the place", "it counts steps while I'm driving"],
        ["step count is within a few hundred of my phone"],
    ),
    "app": aspect(
        "app",
        ["the app is simple and syncs fast"],
        ["the app crashes constantly", "the app wants way too many permissions"],
        ["you need the app for most settings", "the app requires an account"],
    ),
    "screen": aspect(
        "screen",
        ["the screen is bright and readable in sunlight"],
        ["the screen scratched within days", "the screen is unreadable outdoors"],
        ["the screen is fine indoors, a bit dim outside"],
    ),
    "strap": aspect(
        "strap",
        ["the strap is soft and doesn't irritate"],
        ["the strap gave me a rash", "the strap clasp keeps popping open"],
        ["the strap is a standard size, easy to swap"],
    ),
    "volume": aspect(
        "volume",
        ["gets loud enough for a backyard party"],
        ["max volume is barely louder than my phone"],
        ["volume is fine for a small room"],
    ),
    "suction": aspect(
        "suction",
        ["picks up all the dog hair"],
        ["leaves crumbs everywhere", "suction is weak on carpet"],
        ["suction is fine on hard floors, average on carpet"],
    ),
    "navigation": aspect(
        "navigation",
        ["maps the whole floor and never gets stuck"],
        ["gets stuck under the couch every single day", "keeps bumping into the same chair leg"],
        ["navigation looks random, but it gets there eventually"],
    ),
    "assembly": aspect(
        "assembly",
        ["assembly took 15 minutes and all the holes lined up"],
        ["the holes didn't line up and a screw was missing"],
        ["assembly takes about half an hour with two people"],
    ),
    "armrests": aspect(
        "armrests",
        ["the armrests adjust in every direction"],
        ["the armrests wobble"],
        ["the armrests go up and down but not sideways"],
    ),
    "wheels": aspect(
        "wheels",
        ["the wheels roll smoothly on carpet"],
        ["a wheel snapped off in the first week"],
        ["the wheels are a bit loud on hardwood"],
    ),
    "softness": aspect(
        "fabric",
        ["super soft and softer with each wash"],
        ["scratchy like sandpaper"],
        ["softer than cotton, not as soft as silk"],
    ),
    "washing": aspect(
        "washing",
        ["no shrinking or pilling after many washes"],
        ["pilled after the first wash", "shrank a full size in the dryer"],
        ["they wrinkle a bit out of the dryer"],
    ),
    "leaks": aspect(
        "seal",
        ["doesn't leak even upside down in my bag"],
        ["leaks all over my bag"],
        ["only leaks if the lid isn't screwed on fully"],
    ),
    "insulation": aspect(
        "insulation",
        ["keeps ice for a whole day"],
        ["coffee is lukewarm after an hour"],
        ["keeps drinks cold for most of the afternoon"],
    ),
}
