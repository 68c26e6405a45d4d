async def test_regions_list_has_the_22_organisers(api, auth):
    response = await api.get("/v1/regions", headers=auth("system", region="05"))
    assert response.status_code == 200
    assert response.json()["next_cursor"] is None
    codes = [region["code"] for region in response.json()["items"]]
    assert len(codes) == 22 and "91" not in codes and "90" in codes
