"""The profile page: edit details and the avatar; nobody edits anyone else's."""
from datetime import date
from io import BytesIO

import pytest
from PIL import Image

from app.extensions import db
from app.models import User
from tests.conftest import csrf_token, post


def image_bytes(fmt="PNG", size=(640, 480), color=(200, 40, 90)):
    out = BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def upload(client, data, filename="me.png"):
    return client.post("/profile/avatar", data={"avatar": (BytesIO(data), filename),
                                                "csrf_token": csrf_token(client, "/profile")},
                       content_type="multipart/form-data")


def profile_of(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id)


def test_edit_profile(user_client, ctx):
    client, user_id = user_client
    response = post(client, "/profile", {"name": "Alice Liddell", "display_name": "Ali",
                                         "pronouns": "she/her", "location": "Oxford",
                                         "birthdate": "1990-05-04"}, token_from="/profile")
    assert response.status_code == 200
    assert "Your profile is saved." in response.get_data(as_text=True)
    user = profile_of(user_id)
    assert (user.name, user.display_name, user.pronouns, user.location, user.birthdate) == (
        "Alice Liddell", "Ali", "she/her", "Oxford", date(1990, 5, 4))
    assert 'data-testid="signed-in-user">' in client.get("/dashboard").get_data(as_text=True)
    assert "Ali" in client.get("/dashboard").get_data(as_text=True)


def test_edit_profile_htmx_gets_the_form_fragment(user_client):
    client, _ = user_client
    response = client.post("/profile", data={"display_name": "Ali"},
                           headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/profile")})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="profile-form"' in body and "<html" not in body
    assert "Your profile is saved." in body


@pytest.mark.parametrize("field, value, message", [
    ("display_name", "x" * 61, "Field cannot be longer than 60 characters."),
    ("birthdate", "2999-01-01", "Enter a birthdate between 1900 and today."),
    ("birthdate", "1850-01-01", "Enter a birthdate between 1900 and today."),
    ("birthdate", "not-a-date", "Not a valid date value."),
])
def test_bad_profile_input_changes_nothing(user_client, field, value, message, ctx):
    client, user_id = user_client
    response = post(client, "/profile", {"name": "Changed", field: value}, token_from="/profile")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert profile_of(user_id).name == "Alice Example"


def test_profile_form_cannot_touch_other_fields_or_users(user_client, make_user, ctx):
    client, user_id = user_client
    bob = make_user("bob@example.com", name="Bob")
    post(client, "/profile", {"name": "Alice", "email": "bob@example.com", "id": bob, "user_id": bob},
         token_from="/profile")
    assert profile_of(user_id).email == "alice@example.com"
    assert profile_of(bob).name == "Bob"


def test_avatar_upload_is_resized_to_a_square(app, user_client, ctx):
    client, user_id = user_client
    response = upload(client, image_bytes("JPEG", (1200, 800)), "me.jpg")
    assert response.status_code == 302
    user = profile_of(user_id)
    assert user.avatar_key.endswith(".webp")
    served = client.get(f"/media/{user.avatar_key}")
    assert served.status_code == 200
    with Image.open(BytesIO(served.data)) as image:
        assert image.size == (256, 256) and image.format == "WEBP"
    assert f"/media/{user.avatar_key}" in client.get("/profile").get_data(as_text=True)


def test_replacing_the_avatar_deletes_the_old_file(user_client, ctx):
    client, user_id = user_client
    upload(client, image_bytes())
    first = profile_of(user_id).avatar_key
    upload(client, image_bytes(color=(0, 0, 0)))
    assert profile_of(user_id).avatar_key != first
    assert client.get(f"/media/{first}").status_code == 404


@pytest.mark.parametrize("data, filename, status, message", [
    (b"just some text", "me.png", 415, "not an image we can read"),
    (b"", "me.png", 422, "Choose an image"),
    (b"%PDF-1.4 fake", "me.pdf", 415, "not an image we can read"),
])
def test_bad_avatar_is_refused(user_client, data, filename, status, message, ctx):
    client, user_id = user_client
    response = upload(client, data, filename)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert profile_of(user_id).avatar_key is None


def test_unsupported_image_format_is_refused(user_client, ctx):
    client, user_id = user_client
    response = upload(client, image_bytes("BMP"), "me.bmp")
    assert response.status_code == 415
    assert "Upload a JPEG, PNG, GIF or WebP image." in response.get_data(as_text=True)
    assert profile_of(user_id).avatar_key is None


def test_oversized_avatar_is_refused(app, user_client, ctx):
    client, user_id = user_client
    big = image_bytes("PNG", (50, 50)) + b"\0" * (5 * 1024 * 1024)
    response = upload(client, big)
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)
    assert profile_of(user_id).avatar_key is None


def test_request_over_the_body_limit_is_a_413_page(app, user_client):
    client, _ = user_client
    response = upload(client, b"\0" * (app.config["MAX_CONTENT_LENGTH"] + 1))
    assert response.status_code == 413
    assert "larger than we accept" in response.get_data(as_text=True)


def test_decompression_bomb_is_refused(user_client, ctx):
    client, user_id = user_client
    bomb = image_bytes("PNG", (8000, 6000), (0, 0, 0))  # compresses to a few KB, 48 megapixels
    response = upload(client, bomb)
    assert response.status_code == 413
    assert profile_of(user_id).avatar_key is None
