"""What a person does with the foundation, in a real browser: sign in by e-mail code,
edit the profile and picture, run an organisation with a second owner."""
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import screenshot

DASHBOARD = re.compile(r"/dashboard$")


def nav_user(page):
    return page.get_by_test_id("signed-in-user")


def nav_account(page):
    return page.get_by_test_id("current-account")


def owner_rows(page):
    return page.get_by_test_id("owner-row")


@pytest.mark.browser
def test_sign_in_with_an_email_code_then_sign_out(page, outbox, run_jobs):
    email = "dana@example.com"
    page.goto("/auth/login")
    screenshot(page, "sign-in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_role("button", name="E-mail me a code").click()

    # htmx swaps the form, the server's HX-Redirect brings the code page.
    expect(page).to_have_url(re.compile(r"/auth/verify$"))
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.locator("#code-form")).to_contain_text("We sent a 6-digit code to d•••@example.com")
    run_jobs()
    code = outbox.latest_code(email)

    # A wrong code is refused in place, and the form stays usable.
    wrong = f"{(int(code[0]) + 1) % 10}{code[1:]}"
    page.get_by_label("Code").fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#code-form").get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/auth/verify$"))

    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(DASHBOARD)
    expect(page.locator("#flashes")).to_contain_text(f"Welcome, {email}.")
    expect(nav_user(page)).to_have_text(email)
    expect(nav_account(page)).to_have_text(email)  # the new personal account
    expect(page.get_by_text("No events in this account yet.")).to_be_visible()
    screenshot(page, "dashboard")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.locator("#flashes")).to_contain_text("You are signed out.")
    expect(nav_user(page)).to_have_count(0)
    # Signed out for real: the dashboard sends us back to sign in.
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=%2Fdashboard$"))


@pytest.mark.browser
def test_edit_profile_and_picture(page, browser_sign_in, make_user, tmp_path):
    make_user("erin@example.com", name="Erin Example")
    browser_sign_in(page, "erin@example.com")
    expect(nav_user(page)).to_have_text("Erin Example")

    page.get_by_test_id("signed-in-user").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    form = page.locator("#profile-form")
    expect(form.get_by_label("Full name")).to_have_value("Erin Example")
    form.get_by_label("Display name").fill("Erin E.")
    form.get_by_label("Pronouns").fill("she/her")
    form.get_by_label("Location").fill("Lisbon")
    form.get_by_label("Birthdate").fill("1990-04-12")
    form.get_by_role("button", name="Save profile").click()
    expect(form.get_by_role("status")).to_have_text("Your profile is saved.")
    # Only the form was swapped: the nav still carries the old name until a reload.
    expect(nav_user(page)).to_have_text("Erin Example")

    page.reload()
    expect(form.get_by_role("status")).to_have_count(0)
    expect(form.get_by_label("Display name")).to_have_value("Erin E.")
    expect(form.get_by_label("Pronouns")).to_have_value("she/her")
    expect(form.get_by_label("Location")).to_have_value("Lisbon")
    expect(form.get_by_label("Birthdate")).to_have_value("1990-04-12")
    expect(nav_user(page)).to_have_text("Erin E.")

    # A birthdate in the future is refused next to the field, nothing is saved.
    form.get_by_label("Birthdate").fill("2999-01-01")
    form.get_by_role("button", name="Save profile").click()
    expect(form.get_by_text("Enter a birthdate between 1900 and today.")).to_be_visible()
    page.reload()
    expect(form.get_by_label("Birthdate")).to_have_value("1990-04-12")

    # A picture: a real PNG is taken, resized, and shown on the profile and in the nav.
    picture = page.locator("#avatar")
    expect(picture.get_by_test_id("avatar")).to_have_count(0)
    png = tmp_path / "me.png"
    Image.new("RGB", (300, 200), (91, 60, 196)).save(png)
    picture.locator("input[type=file]").set_input_files(png)
    picture.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.locator("#flashes")).to_contain_text("Your new picture is up.")
    avatar = picture.get_by_test_id("avatar")
    expect(avatar).to_be_visible()
    expect(avatar).to_have_js_property("naturalWidth", 256)  # loaded, square, resized
    expect(nav_user(page).locator("img.avatar-sm")).to_be_visible()
    screenshot(page, "profile")

    # A text file renamed .png gets a clear message, and the old picture stays.
    fake = tmp_path / "not-a-picture.png"
    fake.write_text("just some text, not an image\n")
    picture.locator("input[type=file]").set_input_files(fake)
    picture.get_by_role("button", name="Upload").click()
    expect(picture.get_by_role("alert")).to_have_text("That file is not an image we can read.")
    expect(picture.get_by_test_id("avatar")).to_have_js_property("naturalWidth", 256)


@pytest.mark.browser
def test_organisation_with_two_owners(page, new_page, browser_sign_in, make_user):
    make_user("olga@example.com", name="Olga Owner")
    browser_sign_in(page, "olga@example.com")
    expect(nav_account(page)).to_have_text("Olga Owner")

    page.goto("/accounts")
    page.get_by_label("Organisation name").fill("Lantern Live")
    page.get_by_role("button", name="Create organisation").click()
    expect(page.get_by_role("heading", name="Lantern Live", level=1)).to_be_visible()
    expect(page.locator("#flashes")).to_contain_text("Lantern Live is created, and it is your current account.")
    expect(nav_account(page)).to_have_text("Lantern Live")
    settings_url = page.url

    # A second owner, by e-mail: the owners panel is swapped in place.
    owners = page.locator("#owners")
    owners.get_by_label("Add an owner by e-mail").fill("Pat@Example.com")
    owners.get_by_role("button", name="Add owner").click()
    expect(owner_rows(page)).to_have_count(2)
    expect(owner_rows(page).nth(0)).to_contain_text("Olga Owner (you)")
    expect(owner_rows(page).nth(1)).to_contain_text("pat@example.com")
    expect(owners.get_by_role("status")).to_have_text("pat@example.com is now an owner.")
    expect(owners.get_by_label("Add an owner by e-mail")).to_have_value("")

    # Pat, in a browser of their own, signs in and finds the organisation.
    pat = new_page()
    browser_sign_in(pat, "pat@example.com")
    expect(nav_account(pat)).to_have_text("pat@example.com")  # their own personal account first
    pat.locator("#account-switcher summary").click()
    switcher = pat.locator("#account-switcher .menu-body")
    expect(switcher.get_by_role("button", name="Lantern Live")).to_be_visible()
    screenshot(pat, "account-switcher")
    switcher.get_by_role("button", name="Lantern Live").click()
    expect(pat).to_have_url(DASHBOARD)
    expect(nav_account(pat)).to_have_text("Lantern Live")
    expect(pat.get_by_role("heading", name="Lantern Live", level=1)).to_be_visible()

    # Olga removes Pat, once she confirms...
    questions = []

    def confirm(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.goto(settings_url)
    owner_rows(page).filter(has_text="pat@example.com").get_by_role("button", name="Remove").click()
    expect(owner_rows(page)).to_have_count(1)
    expect(owner_rows(page)).to_contain_text("Olga Owner (you)")
    expect(owners.get_by_role("status")).to_have_text("The owner is removed.")
    assert questions == ["Remove pat@example.com as an owner?"]

    # ...and cannot leave as the last owner.
    owner_rows(page).get_by_role("button", name="Leave").click()
    expect(owners.get_by_role("alert")).to_have_text(
        "An account needs at least one owner. Add another owner first.")
    expect(owner_rows(page)).to_have_count(1)
    assert questions[-1] == "Remove Olga Owner as an owner?"
    screenshot(page, "owners")
    page.reload()
    expect(nav_account(page)).to_have_text("Lantern Live")
    expect(owner_rows(page)).to_have_count(1)
    # What the swaps said is not repeated, out of context, on the next page.
    expect(page.locator("#flashes")).to_be_empty()

    # Pat no longer sees the organisation, and is back in their personal account.
    pat.goto("/dashboard")
    expect(nav_account(pat)).to_have_text("pat@example.com")
    pat.locator("#account-switcher summary").click()
    expect(pat.locator("#account-switcher .menu-body").get_by_role("button", name="Lantern Live")).to_have_count(0)
