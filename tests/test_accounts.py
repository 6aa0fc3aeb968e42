"""Organisations, switching accounts, owners; and who may touch which account."""
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, AccountOwner, User
from tests.conftest import csrf_token, post


def owners(account_id):
    return set(db.session.scalars(select(AccountOwner.user_id).where(AccountOwner.account_id == account_id)))


def test_create_organisation_makes_it_current(user_client, ctx):
    client, user_id = user_client
    response = post(client, "/accounts", {"name": "  Moonlight Sessions "}, token_from="/accounts")
    assert response.status_code == 302
    account = db.session.scalar(select(Account).where(Account.name == "Moonlight Sessions"))
    assert account is not None and not account.is_personal
    assert owners(account.id) == {user_id}
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="current-account">Moonlight Sessions<' in page


def test_organisation_name_is_validated(user_client, ctx):
    client, _ = user_client
    for name in ["", "x", "y" * 121]:
        response = post(client, "/accounts", {"name": name}, token_from="/accounts")
        assert response.status_code == 422
    assert "Give the organisation a name." in post(client, "/accounts", {"name": ""},
                                                  token_from="/accounts").get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Account).where(Account.kind == "organization")) == 0


def test_switch_account(owner_client, ctx):
    client, user_id, org_id = owner_client
    personal_id = db.session.scalar(select(Account.id).join(AccountOwner).where(
        AccountOwner.user_id == user_id, Account.kind == "personal"))
    response = post(client, f"/accounts/{org_id}/switch", token_from="/dashboard")
    assert response.status_code == 302
    assert 'data-testid="current-account">Alice Productions<' in client.get("/dashboard").get_data(as_text=True)
    post(client, f"/accounts/{personal_id}/switch", token_from="/dashboard")
    assert 'data-testid="current-account">Alice Example<' in client.get("/dashboard").get_data(as_text=True)


def test_cannot_switch_to_someone_elses_account(owner_client, make_user, make_org, ctx):
    client, user_id, _ = owner_client
    stranger_org = make_org(make_user("bob@example.com"), name="Bob's Club")
    response = post(client, f"/accounts/{stranger_org}/switch", token_from="/dashboard")
    assert response.status_code == 404
    assert db.session.scalar(select(User.current_account_id).where(User.id == user_id)) != stranger_org


def test_add_owner_existing_user_gets_an_email(owner_client, make_user, outbox, run_jobs, ctx):
    client, user_id, org_id = owner_client
    bob = make_user("bob@example.com")
    response = post(client, f"/accounts/{org_id}/owners", {"email": "Bob@Example.com"},
                    token_from=f"/accounts/{org_id}")
    assert response.status_code == 200
    assert "bob@example.com is now an owner." in response.get_data(as_text=True)
    assert owners(org_id) == {user_id, bob}
    run_jobs()
    assert "Alice Productions" in outbox.to("bob@example.com")[0]["Subject"]


def test_add_owner_who_has_never_signed_in_finds_the_account_at_first_sign_in(
        owner_client, app, sign_in, ctx):
    client, _, org_id = owner_client
    post(client, f"/accounts/{org_id}/owners", {"email": "carol@example.com"}, token_from=f"/accounts/{org_id}")
    carol = sign_in("carol@example.com", app.test_client())
    page = carol.get("/accounts").get_data(as_text=True)
    assert "Alice Productions" in page
    assert carol.get(f"/accounts/{org_id}").status_code == 200


def test_add_owner_htmx_returns_the_owners_fragment(owner_client, make_user):
    client, _, org_id = owner_client
    make_user("bob@example.com")
    response = client.post(f"/accounts/{org_id}/owners", data={"email": "bob@example.com"},
                           headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/dashboard")})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="panel" id="owners">') and "<html" not in body
    assert body.count('data-testid="owner-row"') == 2


def test_add_owner_refuses_bad_and_duplicate_addresses(owner_client, ctx):
    client, user_id, org_id = owner_client
    for email, message in [("", "Enter an e-mail address."), ("nope", "That is not an e-mail address."),
                           ("alice@example.com", "alice@example.com is already an owner.")]:
        response = post(client, f"/accounts/{org_id}/owners", {"email": email}, token_from=f"/accounts/{org_id}")
        assert response.status_code == 422, email
        assert message in response.get_data(as_text=True)
    assert owners(org_id) == {user_id}


def test_personal_account_cannot_have_more_owners(user_client, ctx):
    client, user_id = user_client
    personal = db.session.scalar(select(User.current_account_id).where(User.id == user_id))
    response = post(client, f"/accounts/{personal}/owners", {"email": "bob@example.com"}, token_from="/dashboard")
    assert response.status_code == 422
    assert owners(personal) == {user_id}


def test_remove_owner(owner_client, make_user, ctx):
    client, user_id, org_id = owner_client
    bob = make_user("bob@example.com")
    db.session.add(AccountOwner(account_id=org_id, user_id=bob))
    db.session.commit()
    response = post(client, f"/accounts/{org_id}/owners/{bob}/remove", token_from=f"/accounts/{org_id}")
    assert response.status_code == 200
    assert owners(org_id) == {user_id}


def test_last_owner_cannot_be_removed(owner_client, ctx):
    client, user_id, org_id = owner_client
    response = post(client, f"/accounts/{org_id}/owners/{user_id}/remove", token_from=f"/accounts/{org_id}")
    assert response.status_code == 409
    assert "An account needs at least one owner" in response.get_data(as_text=True)
    assert owners(org_id) == {user_id}


def test_leaving_an_organisation_moves_you_back_to_your_own_account(owner_client, make_user, ctx):
    client, user_id, org_id = owner_client
    db.session.add(AccountOwner(account_id=org_id, user_id=make_user("bob@example.com")))
    db.session.commit()
    post(client, f"/accounts/{org_id}/switch", token_from="/dashboard")
    response = post(client, f"/accounts/{org_id}/owners/{user_id}/remove", token_from=f"/accounts/{org_id}")
    assert response.status_code == 302
    assert client.get(f"/accounts/{org_id}").status_code == 404
    assert 'data-testid="current-account">Alice Example<' in client.get("/dashboard").get_data(as_text=True)


def test_rename_account(owner_client, ctx):
    client, _, org_id = owner_client
    response = post(client, f"/accounts/{org_id}", {"name": "Alice Live"}, token_from=f"/accounts/{org_id}")
    assert response.status_code == 302
    assert db.session.scalar(select(Account.name).where(Account.id == org_id)) == "Alice Live"
    response = post(client, f"/accounts/{org_id}", {"name": ""}, token_from=f"/accounts/{org_id}")
    assert response.status_code == 422
    assert db.session.scalar(select(Account.name).where(Account.id == org_id)) == "Alice Live"


def test_a_stranger_cannot_see_or_change_an_account(owner_client, app, sign_in, make_user, ctx):
    _, alice, org_id = owner_client
    make_user("mallory@example.com")
    mallory = sign_in("mallory@example.com", app.test_client())
    token = csrf_token(mallory, "/dashboard")
    assert mallory.get(f"/accounts/{org_id}").status_code == 404
    attempts = [
        (f"/accounts/{org_id}", {"name": "Pwned"}),
        (f"/accounts/{org_id}/owners", {"email": "mallory@example.com"}),
        (f"/accounts/{org_id}/owners/{alice}/remove", {}),
        (f"/accounts/{org_id}/switch", {}),
    ]
    for path, data in attempts:
        assert mallory.post(path, data={**data, "csrf_token": token}).status_code == 404, path
    assert db.session.scalar(select(Account.name).where(Account.id == org_id)) == "Alice Productions"
    assert owners(org_id) == {alice}


def test_account_pages_need_sign_in(client, make_user, make_org):
    org_id = make_org(make_user())
    for path in ["/dashboard", "/accounts", f"/accounts/{org_id}", "/profile"]:
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.location, path


def test_unknown_account_is_404(user_client):
    client, _ = user_client
    response = client.get("/accounts/doesnotexist")
    assert response.status_code == 404
    assert "no such account" in response.get_data(as_text=True)
