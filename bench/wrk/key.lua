-- GET with a valid key (KEY from the environment).
wrk.headers["Authorization"] = "Api-Key " .. os.getenv("KEY")
