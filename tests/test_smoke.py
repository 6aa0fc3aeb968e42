def test_home_page_lists_active_events(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "Upcoming" in response.get_data(as_text=True)


def test_sign_in_flow_lands_on_dashboard(user_client):
    client, _ = user_client
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Alice Example" in page
