// movierec's page: plain JS over the HTTP/JSON endpoints (bodies are the proto3 JSON of movierec.v1 messages).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOP_K = 10;
  const SEARCH_LIMIT = 10;
  const state = {
    scale: { min: 1, max: 5, step: 1 },
    profileAware: false,
    ratings: new Map(), // movie id -> stars, in the order given
    movies: new Map(), // movie id -> {id, title, year, genres}
    token: sessionStorage.getItem("movierec-token") || "",
    seq: 0, // the newest list request; older answers are dropped
    user: null, // a known user id being shown, or null
  };

  // -- talking to the server --------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (state.token) headers.authorization = "Bearer " + state.token;
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({ message: res.statusText }));
    if (!res.ok) {
      if (res.status === 401) $("token-box").hidden = false;
      const err = new Error(data.message || res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function showError(err) {
    const box = $("error");
    box.textContent = err ? String(err.message || err) : "";
    box.hidden = !err;
  }

  function asMovie(m) {
    const movie = { id: Number(m.movieId), title: m.title || "", year: m.year || 0, genres: m.genres || [] };
    state.movies.set(movie.id, movie);
    return movie;
  }

  async function moviesById(ids) {
    const missing = ids.filter((id) => !state.movies.has(id));
    if (missing.length) {
      const data = await api("GET", "/v1/movies?movie_ids=" + missing.join(","));
      data.movies.forEach(asMovie);
    }
    return ids.map((id) => state.movies.get(id));
  }

  // -- stars ----------------------------------------------------------------------------------------------------
  function starValues() {
    const { min, max, step } = state.scale;
    const values = [];
    if (step > 0 && (max - min) / step <= 10) {
      for (let v = min; v <= max + 1e-9; v += step) values.push(Math.round(v * 100) / 100);
    } else {
      for (let v = Math.ceil(min); v <= max; v += 1) values.push(v);
    }
    return values;
  }

  function stars(movie) {
    const box = document.createElement("span");
    box.className = "stars";
    const current = state.ratings.get(movie.id);
    for (const value of starValues()) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "star" + (current !== undefined && value <= current ? " on" : "");
      b.textContent = "★";
      b.title = `${value} — click again to remove`;
      b.dataset.value = String(value);
      b.setAttribute("aria-label", `rate ${movie.title} ${value}`);
      b.addEventListener("click", () => rate(movie, value));
      box.append(b);
    }
    return box;
  }

  function describe(movie, tag = "li") {
    const li = document.createElement(tag);
    li.dataset.movieId = String(movie.id);
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = movie.title;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [movie.year || "", movie.genres.join(", ")].filter(Boolean).join(" · ");
    li.append(title, meta);
    return li;
  }

  function rate(movie, value) {
    if (state.ratings.get(movie.id) === value) state.ratings.delete(movie.id);
    else state.ratings.set(movie.id, value);
    state.user = null;
    renderRatings();
    renderSearchStars();
    refresh();
  }

  function renderRatings() {
    const ul = $("ratings");
    ul.replaceChildren();
    for (const id of state.ratings.keys()) {
      const movie = state.movies.get(id);
      const li = describe(movie);
      li.append(stars(movie));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `remove ${movie.title}`);
      remove.addEventListener("click", () => rate(movie, state.ratings.get(id)));
      li.append(remove);
      ul.append(li);
    }
    $("ratings-empty").hidden = state.ratings.size > 0;
    $("clear-ratings").hidden = state.ratings.size === 0;
  }

  function renderSearchStars() {
    for (const li of $("search-results").children) {
      const movie = state.movies.get(Number(li.dataset.movieId));
      li.querySelector(".stars").replaceWith(stars(movie));
    }
  }

  // -- search ---------------------------------------------------------------------------------------------------
  let searchTimer = 0;
  async function search() {
    const q = $("search").value.trim();
    const ul = $("search-results");
    if (!q) {
      ul.replaceChildren();
      ul.dataset.query = "";
      ul.dataset.state = "ready";
      return;
    }
    try {
      const data = await api("GET", `/v1/movies/search?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`);
      if ($("search").value.trim() !== q) return; // typed on meanwhile
      ul.replaceChildren(...data.movies.map((m) => {
        const movie = asMovie(m);
        const li = describe(movie);
        li.append(stars(movie));
        return li;
      }));
      if (!data.movies.length) {
        const li = document.createElement("li");
        li.className = "hint";
        li.textContent = "no title matches";
        ul.append(li);
      }
      ul.dataset.query = q;
      ul.dataset.state = "ready";
      showError(null);
    } catch (err) {
      showError(err);
    }
  }

  // -- the list -------------------------------------------------------------------------------------------------
  function profile() {
    const p = {};
    const age = Number($("age").value);
    if (Number.isInteger(age) && age > 0) p.age = age;
    if ($("gender").value) p.gender = $("gender").value;
    if ($("occupation").value) p.occupation = $("occupation").value;
    return p;
  }

  const signature = () => [...state.ratings].map(([id, v]) => `${id}:${v}`).sort().join(",");
  const profileSignature = (p) => Object.entries(p).map(([k, v]) => `${k}=${v}`).join(";");

  async function refresh() {
    const seq = ++state.seq;
    const recs = $("recs");
    recs.dataset.state = "loading";
    try {
      let list, heading, forWhat, prof = "";
      if (state.user !== null) {
        const data = await api("POST", "/v1/recommend", { userIds: [String(state.user)], k: TOP_K, includeTitles: true });
        list = data.recommendations[0];
        heading = `Top ${TOP_K} for user ${state.user}`;
        forWhat = `user:${state.user}`;
      } else {
        const ids = [...state.ratings.keys()];
        const p = profile();
        const query = { ratings: { movieIds: ids.map(String), ratings: ids.map((id) => state.ratings.get(id)) } };
        if (Object.keys(p).length) query.profile = p;
        const data = await api("POST", "/v1/recommend-for-ratings", { queries: [query], k: TOP_K, includeTitles: true });
        list = data.results[0].recommendations || { movieIds: [], scores: [] };
        heading = ids.length || Object.keys(p).length ? `Top ${TOP_K} for you` : "Most popular";
        forWhat = signature();
        prof = profileSignature(p);
      }
      const ids = list.movieIds.map(Number);
      const movies = await moviesById(ids);
      if (seq !== state.seq) return; // a newer request is on its way
      recs.replaceChildren(...movies.map((movie, i) => {
        const li = describe(movie);
        li.dataset.score = String(list.scores[i]);
        const score = document.createElement("span");
        score.className = "score";
        score.textContent = Number(list.scores[i]).toFixed(3);
        li.append(score);
        return li;
      }));
      $("recs-title").textContent = heading;
      $("user-back").hidden = state.user === null;
      recs.dataset.for = forWhat;
      recs.dataset.profile = prof;
      recs.dataset.state = "ready";
      showError(null);
    } catch (err) {
      if (seq !== state.seq) return;
      recs.dataset.state = "error";
      showError(err);
    }
  }

  // -- start ----------------------------------------------------------------------------------------------------
  async function start() {
    try {
      const info = await api("GET", "/v1/model-info");
      const m = info.model;
      $("model-version").textContent = m.version;
      $("model-dataset").textContent = m.dataset;
      $("model-kind").textContent = `${m.nItems} movies, ${m.nUsers} users`;
      if (m.ratingScale && m.ratingScale.max) state.scale = m.ratingScale;
      const { min, max, step } = state.scale;
      $("rating-scale").textContent = `${min}..${max}` + (step ? ` step ${step}` : "");
      const side = m.sideInformation || {};
      state.profileAware = Boolean(side.profileAware);
      $("profile-note").hidden = state.profileAware;
      const occ = $("occupation");
      occ.replaceChildren(new Option("—", ""), ...(side.occupations || []).map((o) => new Option(o, o)));
      document.body.dataset.ready = "true";
      showError(null);
    } catch (err) {
      showError(err);
      return;
    }
    refresh();
  }

  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    $("search-results").dataset.state = "pending"; // until the results for what is typed now are shown
    searchTimer = setTimeout(search, 150);
  });
  $("clear-ratings").addEventListener("click", () => {
    state.ratings.clear();
    renderRatings();
    renderSearchStars();
    refresh();
  });
  $("profile").addEventListener("change", () => {
    state.user = null;
    refresh();
  });
  $("profile").addEventListener("submit", (e) => e.preventDefault());
  $("user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = Number($("user-id").value);
    if (!Number.isInteger(id) || id <= 0) return showError(new Error("user id: give a positive whole number"));
    state.user = id;
    refresh();
  });
  $("user-back").addEventListener("click", () => {
    state.user = null;
    refresh();
  });
  $("token-box").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("movierec-token", state.token);
    $("token-box").hidden = true;
    start();
  });
  start();
})();
