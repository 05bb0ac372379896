"""Who holds a role: reading the role a question asks about, and checking people against it."""

from __future__ import annotations

import pytest

import rag
from rag.documents import make_document
from rag.question import role_asked

TOWN = (
    "Glenford Spring Fair\n\n"
    "Vice Mayor Ann Lee opened the Glenford spring fair on Saturday with a speech on the new market hall. "
    "Tom Hart, Mayor of Glenford, and Rosa Diaz, Mayor of Kelby, later toured the stalls together.\n"
)


@pytest.fixture(scope="module")
def town_index(tmp_path_factory) -> rag.Index:
    return rag.open_index(
        documents=[make_document("fair.txt", TOWN)], index_dir=tmp_path_factory.mktemp("town"), progress=False
    )


@pytest.mark.parametrize(
    ("question", "role", "of"),
    [
        ("Who is the general manager of the Hongqi brand?", ("general", "manag"), ("hongqi", "brand")),
        ("Who was Governor of Jilin Province when FAW released it?", ("governor",), ("jilin", "provinc")),
        (
            "Who was the Panthers head coach for the 2015 season?",
            ("panther", "head", "coach"),
            ("panther", "2015", "season"),
        ),
        ("Who was elected President in November 1960?", ("elect", "presid"), ()),
        ("What is Kenya a founding member of?", (), ()),  # not a "who" question
        ("Who chaired the conference?", (), ()),
        ("What was the theme of the conference?", (), ()),
    ],
)
def test_role_asked_is_the_role_and_what_it_is_of(question, role, of):
    assert role_asked(question) == (role, of)


def test_a_vice_mayor_is_not_the_mayor_and_a_mayor_of_another_town_is_not_either(town_index):
    # the vice mayor's sentence matches the question best; the mayor is named in an apposition
    answer = rag.ask("Who is the mayor of Glenford?", index=town_index)
    assert answer.short_answer == "Tom Hart"
    assert rag.ask("Who is the mayor of Kelby?", index=town_index).short_answer == "Rosa Diaz"
    assert rag.ask("Who is the vice mayor of Glenford?", index=town_index).short_answer == "Ann Lee"


def test_no_one_holds_a_role_of_something_the_documents_give_no_holder_for(town_index):
    # both mayors are of other towns: neither is the mayor of Ashford
    answer = rag.ask("Who is the mayor of the Ashford district?", index=town_index)
    assert answer.abstained or answer.short_answer not in ("Tom Hart", "Rosa Diaz", "Ann Lee")


def test_on_the_seeds_a_role_is_read_from_the_apposition_and_the_title(seeds_index):
    # "Vice Governor Li Guoqiang" presided; "Hu Yuting, deputy secretary ... and governor" attended
    answer = rag.ask(
        "Who was the governor of Jilin Province at the 2023 China Automotive Innovation Conference?",
        index=seeds_index,
    )
    assert answer.short_answer == "Hu Yuting"
    # the general managers the articles name are of FAW Group and of CATARC, not of the Hongqi brand
    assert rag.ask("Who is the general manager of the Hongqi brand?", index=seeds_index).abstained
