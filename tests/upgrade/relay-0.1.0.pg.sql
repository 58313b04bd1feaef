--
-- PostgreSQL database dump
--

\restrict QhhXBO0jAVKlagIFlslYg5yDDjaq9rRCsj6Gl7RHx1Nfs1bQyQxt9bRXQMAqJCY

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: attempts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.attempts (
    id bigint NOT NULL,
    delivery_id bigint NOT NULL,
    number integer NOT NULL,
    started_at double precision NOT NULL,
    duration_ms double precision NOT NULL,
    status integer,
    error text,
    response_excerpt text,
    outcome text NOT NULL,
    response_headers text,
    CONSTRAINT attempts_outcome_check CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retry'::text, 'dead'::text])))
);


--
-- Name: attempts_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: attempts_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.attempts_id_seq OWNED BY public.attempts.id;


--
-- Name: audit; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit (
    id bigint NOT NULL,
    at double precision NOT NULL,
    actor text NOT NULL,
    origin text,
    action text NOT NULL,
    target text,
    params text DEFAULT '{}'::text NOT NULL,
    result text DEFAULT '{}'::text NOT NULL,
    request_id text
);


--
-- Name: audit_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_id_seq OWNED BY public.audit.id;


--
-- Name: deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.deliveries (
    id bigint NOT NULL,
    event_id text NOT NULL,
    destination text NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at double precision NOT NULL,
    lease_until double precision,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    delivered_at double precision,
    last_status integer,
    last_error text,
    ordering_key text,
    replay_of bigint,
    lease_seq bigint DEFAULT 0 NOT NULL,
    CONSTRAINT deliveries_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'delivered'::text, 'dead'::text])))
);


--
-- Name: dead_unreplayed; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.dead_unreplayed AS
 SELECT d.id,
    d.event_id,
    d.destination,
    d.state,
    d.attempts,
    d.next_attempt_at,
    d.lease_until,
    d.created_at,
    d.updated_at,
    d.delivered_at,
    d.last_status,
    d.last_error,
    d.ordering_key,
    d.replay_of,
    d.lease_seq
   FROM public.deliveries d
  WHERE ((d.state = 'dead'::text) AND (NOT (EXISTS ( SELECT 1
           FROM public.deliveries r
          WHERE (r.replay_of = d.id)))));


--
-- Name: deliveries_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.deliveries_id_seq OWNED BY public.deliveries.id;


--
-- Name: destination_state; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.destination_state (
    destination text NOT NULL,
    paused integer DEFAULT 0 NOT NULL,
    paused_at double precision,
    reason text,
    updated_at double precision NOT NULL,
    tokens double precision,
    tokens_at double precision,
    circuit text DEFAULT 'closed'::text NOT NULL,
    streak integer DEFAULT 0 NOT NULL,
    opened_at double precision,
    failing_since double precision
);


--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    id text NOT NULL,
    source text NOT NULL,
    received_at double precision NOT NULL,
    idempotency_key text,
    event_type text,
    content_type text,
    remote_addr text,
    headers text NOT NULL,
    body bytea NOT NULL,
    occurred_at double precision,
    redacted_at double precision,
    seq bigint NOT NULL,
    parent_id text,
    provider text,
    channel text,
    provider_type text,
    subject text,
    contact text,
    conversation text,
    stale integer
);


--
-- Name: events_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.events_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: events_seq_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.events_seq_seq OWNED BY public.events.seq;


--
-- Name: minutes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.minutes (
    minute bigint NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    metric text NOT NULL,
    n bigint NOT NULL
);


--
-- Name: rejections; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rejections (
    id bigint NOT NULL,
    at double precision NOT NULL,
    source text NOT NULL,
    status integer NOT NULL,
    reason text NOT NULL,
    remote_addr text,
    method text NOT NULL,
    headers text NOT NULL
);


--
-- Name: rejections_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.rejections_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: rejections_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.rejections_id_seq OWNED BY public.rejections.id;


--
-- Name: relay_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.relay_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: statuses; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.statuses (
    provider text NOT NULL,
    subject text NOT NULL,
    status text NOT NULL,
    rank integer NOT NULL,
    event_id text NOT NULL,
    occurred_at double precision,
    updated_at double precision NOT NULL
);


--
-- Name: v_dead; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.v_dead AS
 SELECT d.id AS delivery_id,
    d.event_id,
    e.source,
    e.event_type,
    d.destination,
    d.attempts,
    d.last_status,
    d.last_error,
    to_char((to_timestamp(d.updated_at) AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD HH24:MI:SS'::text) AS died,
    (EXISTS ( SELECT 1
           FROM public.deliveries r
          WHERE (r.replay_of = d.id))) AS replayed,
    d.updated_at AS died_at
   FROM (public.deliveries d
     JOIN public.events e ON ((e.id = d.event_id)))
  WHERE (d.state = 'dead'::text);


--
-- Name: v_destination_health; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.v_destination_health AS
 SELECT d.destination,
    count(*) FILTER (WHERE (d.state = 'pending'::text)) AS pending,
    ( SELECT count(*) AS count
           FROM public.dead_unreplayed u
          WHERE (u.destination = d.destination)) AS dead,
    count(*) FILTER (WHERE ((d.state = 'delivered'::text) AND (d.delivered_at > ((EXTRACT(epoch FROM now()) - (3600)::numeric))::double precision))) AS delivered_last_hour,
    (((EXTRACT(epoch FROM now()))::double precision - min(
        CASE
            WHEN (d.state = 'pending'::text) THEN d.created_at
            ELSE NULL::double precision
        END)))::integer AS oldest_pending_seconds,
    COALESCE(max(s.paused), 0) AS paused
   FROM (public.deliveries d
     LEFT JOIN public.destination_state s ON ((s.destination = d.destination)))
  GROUP BY d.destination;


--
-- Name: v_events; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.v_events AS
 SELECT e.id,
    e.source,
    to_char((to_timestamp(e.received_at) AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD HH24:MI:SS'::text) AS received,
    e.event_type,
    e.idempotency_key,
    e.remote_addr,
    length(e.body) AS body_bytes,
    ( SELECT count(*) AS count
           FROM public.deliveries d
          WHERE (d.event_id = e.id)) AS deliveries,
    ( SELECT count(*) AS count
           FROM public.deliveries d
          WHERE ((d.event_id = e.id) AND (d.state = 'pending'::text))) AS pending,
    ( SELECT count(*) AS count
           FROM public.deliveries d
          WHERE ((d.event_id = e.id) AND (d.state = 'delivered'::text))) AS delivered,
    ( SELECT count(*) AS count
           FROM public.deliveries d
          WHERE ((d.event_id = e.id) AND (d.state = 'dead'::text))) AS dead,
    e.received_at
   FROM public.events e;


--
-- Name: attempts id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.attempts ALTER COLUMN id SET DEFAULT nextval('public.attempts_id_seq'::regclass);


--
-- Name: audit id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit ALTER COLUMN id SET DEFAULT nextval('public.audit_id_seq'::regclass);


--
-- Name: deliveries id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries ALTER COLUMN id SET DEFAULT nextval('public.deliveries_id_seq'::regclass);


--
-- Name: events seq; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events ALTER COLUMN seq SET DEFAULT nextval('public.events_seq_seq'::regclass);


--
-- Name: rejections id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rejections ALTER COLUMN id SET DEFAULT nextval('public.rejections_id_seq'::regclass);


--
-- Data for Name: attempts; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.attempts (id, delivery_id, number, started_at, duration_ms, status, error, response_excerpt, outcome, response_headers) FROM stdin;
1	2	1	1796637843.2581937	1.8712089995460701	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
2	1	1	1796637843.2585912	1.8096249996233382	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
3	5	1	1796637843.2648506	1.4465539998127497	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
4	4	1	1796637843.2650342	1.3626870004372904	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
5	8	1	1796637843.269915	0.8684189997438807	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
6	7	1	1796637843.270086	0.7872660007706145	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
7	11	1	1796637843.2812715	1.0823000002346816	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
8	10	1	1796637843.2814522	0.9983319996536011	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
9	14	1	1796637843.2852905	0.964648999797646	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
10	13	1	1796637843.285429	0.9065310005098581	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
11	16	1	1796637843.2974539	0.42919400038954336	200	\N	ok	delivered	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "2"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
12	17	1	1796637843.361029	1.7492309998488054	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
13	18	1	1796637843.3613098	2.872558000490244	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
14	19	1	1796637843.3615434	2.7211630003876053	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
15	20	1	1796637843.3616896	2.645060999384441	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
16	21	1	1796637843.3618245	2.574277999883634	422	HTTP 422; HTTP 422 is permanent	rejected by the test receiver	dead	[["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", "29"], ["Date", "Mon, 07 Dec 2026 10:04:03 GMT"], ["Server", "Python/3.11 aiohttp/3.14.5"]]
\.


--
-- Data for Name: audit; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.audit (id, at, actor, origin, action, target, params, result, request_id) FROM stdin;
1	1796637843.3528748	api	127.0.0.1	replay	dead deliveries to bad	{"destination": "bad"}	{"replayed": 5, "events": 5, "destinations": {"bad": 5}}	upgrade-replay-1
\.


--
-- Data for Name: deliveries; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.deliveries (id, event_id, destination, state, attempts, next_attempt_at, lease_until, created_at, updated_at, delivered_at, last_status, last_error, ordering_key, replay_of, lease_seq) FROM stdin;
3	evt_01M97ZBQSF79RX9RQWNKS0DWS2	held	pending	0	1796637843.2471645	\N	1796637843.2471645	1796637843.2471645	\N	\N	\N	\N	\N	0
6	evt_01M97ZBQSNJZFNVTG2FZTK3EK2	held	pending	0	1796637843.2530873	\N	1796637843.2530873	1796637843.2530873	\N	\N	\N	\N	\N	0
9	evt_01M97ZBQSTX9MNCN9K2BKXNCHB	held	pending	0	1796637843.2588563	\N	1796637843.2588563	1796637843.2588563	\N	\N	\N	\N	\N	0
2	evt_01M97ZBQSF79RX9RQWNKS0DWS2	bad	dead	1	1796637843.2600777	\N	1796637843.2471645	1796637843.2600942	\N	422	HTTP 422; HTTP 422 is permanent	\N	\N	1
1	evt_01M97ZBQSF79RX9RQWNKS0DWS2	ok	delivered	1	1796637843.2604084	\N	1796637843.2471645	1796637843.2604153	1796637843.2604153	200	\N	\N	\N	1
12	evt_01M97ZBQT27P3YF3AFVVPCWFJT	held	pending	0	1796637843.2665076	\N	1796637843.2665076	1796637843.2665076	\N	\N	\N	\N	\N	0
5	evt_01M97ZBQSNJZFNVTG2FZTK3EK2	bad	dead	1	1796637843.2663054	\N	1796637843.2530873	1796637843.2663143	\N	422	HTTP 422; HTTP 422 is permanent	\N	\N	1
4	evt_01M97ZBQSNJZFNVTG2FZTK3EK2	ok	delivered	1	1796637843.2664037	\N	1796637843.2530873	1796637843.2664092	1796637843.2664092	200	\N	\N	\N	1
15	evt_01M97ZBQTA5ZPK2K9YMM907DR9	held	pending	0	1796637843.2748544	\N	1796637843.2748544	1796637843.2748544	\N	\N	\N	\N	\N	0
8	evt_01M97ZBQSTX9MNCN9K2BKXNCHB	bad	dead	1	1796637843.2707927	\N	1796637843.2588563	1796637843.2708013	\N	422	HTTP 422; HTTP 422 is permanent	\N	\N	1
7	evt_01M97ZBQSTX9MNCN9K2BKXNCHB	ok	delivered	1	1796637843.2708797	\N	1796637843.2588563	1796637843.2708879	1796637843.2708879	200	\N	\N	\N	1
11	evt_01M97ZBQT27P3YF3AFVVPCWFJT	bad	dead	1	1796637843.282363	\N	1796637843.2665076	1796637843.2823713	\N	422	HTTP 422; HTTP 422 is permanent	\N	\N	1
10	evt_01M97ZBQT27P3YF3AFVVPCWFJT	ok	delivered	1	1796637843.2824585	\N	1796637843.2665076	1796637843.2824674	1796637843.2824674	200	\N	\N	\N	1
14	evt_01M97ZBQTA5ZPK2K9YMM907DR9	bad	dead	1	1796637843.2862642	\N	1796637843.2748544	1796637843.2862725	\N	422	HTTP 422; HTTP 422 is permanent	\N	\N	1
13	evt_01M97ZBQTA5ZPK2K9YMM907DR9	ok	delivered	1	1796637843.286342	\N	1796637843.2748544	1796637843.2863467	1796637843.2863467	200	\N	\N	\N	1
16	evt_01M97ZBQTS5D1T9KQ27W3S4WS1	ok	delivered	1	1796637843.2978916	\N	1796637843.289386	1796637843.2978985	1796637843.2978985	200	\N	\N	\N	1
17	evt_01M97ZBQSF79RX9RQWNKS0DWS2	bad	dead	1	1796637843.3627925	\N	1796637843.3528748	1796637843.3628094	\N	422	HTTP 422; HTTP 422 is permanent	\N	2	1
18	evt_01M97ZBQSNJZFNVTG2FZTK3EK2	bad	dead	1	1796637843.3641913	\N	1796637843.3528748	1796637843.364199	\N	422	HTTP 422; HTTP 422 is permanent	\N	5	1
19	evt_01M97ZBQSTX9MNCN9K2BKXNCHB	bad	dead	1	1796637843.364271	\N	1796637843.3528748	1796637843.3642764	\N	422	HTTP 422; HTTP 422 is permanent	\N	8	1
20	evt_01M97ZBQT27P3YF3AFVVPCWFJT	bad	dead	1	1796637843.3643403	\N	1796637843.3528748	1796637843.364345	\N	422	HTTP 422; HTTP 422 is permanent	\N	11	1
21	evt_01M97ZBQTA5ZPK2K9YMM907DR9	bad	dead	1	1796637843.3644042	\N	1796637843.3528748	1796637843.3644094	\N	422	HTTP 422; HTTP 422 is permanent	\N	14	1
22	evt_01M97ZBQX07918MGR6Z6MX3PMR	slow	pending	1	1796637843.3606174	1796637874.3653471	1796637843.3606174	1796637843.3653471	\N	\N	\N	\N	\N	1
\.


--
-- Data for Name: destination_state; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.destination_state (destination, paused, paused_at, reason, updated_at, tokens, tokens_at, circuit, streak, opened_at, failing_since) FROM stdin;
\.


--
-- Data for Name: events; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.events (id, source, received_at, idempotency_key, event_type, content_type, remote_addr, headers, body, occurred_at, redacted_at, seq, parent_id, provider, channel, provider_type, subject, contact, conversation, stale) FROM stdin;
evt_01M97ZBQSF79RX9RQWNKS0DWS2	demo	1796637843.2471645	inv-0	invoice.paid	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=f19013242798a4a1005bf51a099e42e1bdb22fd39bb75c7fe5a9a82e3233c7c3"], ["X-Request-ID", "inv-0"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "32"]]	\\x7b2274797065223a2022696e766f6963652e70616964222c20226e223a20307d	\N	\N	1	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQSNJZFNVTG2FZTK3EK2	demo	1796637843.2530873	inv-1	invoice.paid	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=06fe86dbc9d2d6fc7d4939aed77c38f4d9bb0a6dff62514a26661e146faedb4a"], ["X-Request-ID", "inv-1"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "32"]]	\\x7b2274797065223a2022696e766f6963652e70616964222c20226e223a20317d	\N	\N	2	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQSTX9MNCN9K2BKXNCHB	demo	1796637843.2588563	inv-2	invoice.paid	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=23e659bf56c5cf60449382bd6e7f081f7b9c741429b6de2c8899dfbe4a71ae90"], ["X-Request-ID", "inv-2"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "32"]]	\\x7b2274797065223a2022696e766f6963652e70616964222c20226e223a20327d	\N	\N	3	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQT27P3YF3AFVVPCWFJT	demo	1796637843.2665076	inv-3	invoice.paid	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=90b653218259ed931f768e7055e2ce01e67a324db75754433b5c31587d360b3f"], ["X-Request-ID", "inv-3"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "32"]]	\\x7b2274797065223a2022696e766f6963652e70616964222c20226e223a20337d	\N	\N	4	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQTA5ZPK2K9YMM907DR9	demo	1796637843.2748544	inv-4	invoice.paid	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=1c71fab6e7aa6dc47ee264237db55bcd6a03c57d6db16611e8e5e872fe993d98"], ["X-Request-ID", "inv-4"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "32"]]	\\x7b2274797065223a2022696e766f6963652e70616964222c20226e223a20347d	\N	\N	5	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQTN67ZN0J06S76FZRPC	demo	1796637843.2859797	unrouted-1	other.thing	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=eaa928549eadd248627e4ba196831b8081c52c2498d248ad149d149d30451ab0"], ["X-Request-ID", "unrouted-1"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "23"]]	\\x7b2274797065223a20226f746865722e7468696e67227d	\N	\N	7	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQTS5D1T9KQ27W3S4WS1	wa	1796637843.289386	\N	\N	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "316"]]	\\x7b22656e747279223a205b7b226368616e676573223a205b7b2276616c7565223a207b227374617475736573223a205b7b226964223a202277616d69642e31222c2022737461747573223a202273656e74222c202274696d657374616d70223a202231373634343030303030222c2022726563697069656e745f6964223a20223331227d2c207b226964223a202277616d69642e31222c2022737461747573223a202272656164222c202274696d657374616d70223a202231373634343030303031222c2022726563697069656e745f6964223a20223331227d2c207b226964223a202277616d69642e31222c2022737461747573223a202264656c697665726564222c202274696d657374616d70223a202231373634343030303032222c2022726563697069656e745f6964223a20223331227d5d7d7d5d7d5d7d	\N	\N	8	\N	\N	\N	\N	\N	\N	\N	\N
evt_01M97ZBQTSN2TJ0019VN3KE990	wa	1796637843.289386	wamid.1:sent:1764400000	message.sent	application/json	127.0.0.1	[["Content-Type", "application/json"]]	\\x7b226964223a2277616d69642e31222c22737461747573223a2273656e74222c2274696d657374616d70223a2231373634343030303030222c22726563697069656e745f6964223a223331227d	1764400000	\N	9	evt_01M97ZBQTS5D1T9KQ27W3S4WS1	whatsapp	whatsapp	sent	wamid.1	31	\N	0
evt_01M97ZBQTSKD32F369ECWNBZKN	wa	1796637843.289386	wamid.1:read:1764400001	message.read	application/json	127.0.0.1	[["Content-Type", "application/json"]]	\\x7b226964223a2277616d69642e31222c22737461747573223a2272656164222c2274696d657374616d70223a2231373634343030303031222c22726563697069656e745f6964223a223331227d	1764400001	\N	10	evt_01M97ZBQTS5D1T9KQ27W3S4WS1	whatsapp	whatsapp	read	wamid.1	31	\N	0
evt_01M97ZBQTSC9FKMY864QCENVNV	wa	1796637843.289386	wamid.1:delivered:1764400002	message.delivered	application/json	127.0.0.1	[["Content-Type", "application/json"]]	\\x7b226964223a2277616d69642e31222c22737461747573223a2264656c697665726564222c2274696d657374616d70223a2231373634343030303032222c22726563697069656e745f6964223a223331227d	1764400002	\N	11	evt_01M97ZBQTS5D1T9KQ27W3S4WS1	whatsapp	whatsapp	delivered	wamid.1	31	\N	1
evt_01M97ZBQX07918MGR6Z6MX3PMR	demo	1796637843.3606174	slow-1	slow.one	application/json	127.0.0.1	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "sha256=f489bc3b2c4896bf87ce3fc28ab5531c483d309f2430af95c489d9b5e02b4e01"], ["X-Request-ID", "slow-1"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "20"]]	\\x7b2274797065223a2022736c6f772e6f6e65227d	\N	\N	12	\N	\N	\N	\N	\N	\N	\N	\N
\.


--
-- Data for Name: minutes; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.minutes (minute, kind, name, metric, n) FROM stdin;
29943964	destination	bad	queued	5
29943964	destination	held	queued	5
29943964	destination	ok	queued	5
29943964	destination	ok	lat2	5
29943964	source	demo	rejected	1
29943964	source	wa	received	3
29943964	destination	ok	delivered	6
29943964	destination	ok	lat1	1
29943964	destination	slow	queued	1
29943964	source	demo	received	7
29943964	destination	bad	dead	10
\.


--
-- Data for Name: rejections; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.rejections (id, at, source, status, reason, remote_addr, method, headers) FROM stdin;
1	1796637843.2888784	demo	401	signature does not match	127.0.0.1	POST	[["Host", "127.0.0.1:42007"], ["Content-Type", "application/json"], ["X-Signature", "[redacted]"], ["X-Request-ID", "x"], ["Accept", "*/*"], ["Accept-Encoding", "gzip, deflate"], ["User-Agent", "Python/3.11 aiohttp/3.14.5"], ["Content-Length", "24"]]
\.


--
-- Data for Name: relay_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.relay_migrations (version, name, applied_at) FROM stdin;
1	0001_initial.sql	2026-12-07 10:04:03.122919+00
2	0002_normalized_events.sql	2026-12-07 10:04:03.148276+00
3	0003_minutes.sql	2026-12-07 10:04:03.152154+00
\.


--
-- Data for Name: statuses; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.statuses (provider, subject, status, rank, event_id, occurred_at, updated_at) FROM stdin;
whatsapp	wamid.1	message.read	40	evt_01M97ZBQTSKD32F369ECWNBZKN	1764400001	1796637843.289386
\.


--
-- Name: attempts_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.attempts_id_seq', 16, true);


--
-- Name: audit_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.audit_id_seq', 1, true);


--
-- Name: deliveries_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.deliveries_id_seq', 22, true);


--
-- Name: events_seq_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.events_seq_seq', 12, true);


--
-- Name: rejections_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.rejections_id_seq', 1, true);


--
-- Name: attempts attempts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (id);


--
-- Name: audit audit_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_pkey PRIMARY KEY (id);


--
-- Name: deliveries deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);


--
-- Name: destination_state destination_state_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.destination_state
    ADD CONSTRAINT destination_state_pkey PRIMARY KEY (destination);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);


--
-- Name: minutes minutes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.minutes
    ADD CONSTRAINT minutes_pkey PRIMARY KEY (minute, kind, name, metric);


--
-- Name: rejections rejections_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rejections
    ADD CONSTRAINT rejections_pkey PRIMARY KEY (id);


--
-- Name: relay_migrations relay_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.relay_migrations
    ADD CONSTRAINT relay_migrations_pkey PRIMARY KEY (version);


--
-- Name: statuses statuses_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.statuses
    ADD CONSTRAINT statuses_pkey PRIMARY KEY (provider, subject);


--
-- Name: attempts_delivery; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX attempts_delivery ON public.attempts USING btree (delivery_id);


--
-- Name: audit_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_at ON public.audit USING btree (at);


--
-- Name: audit_request; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX audit_request ON public.audit USING btree (request_id) WHERE (request_id IS NOT NULL);


--
-- Name: deliveries_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_due ON public.deliveries USING btree (destination, next_attempt_at) WHERE (state = 'pending'::text);


--
-- Name: deliveries_event; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_event ON public.deliveries USING btree (event_id);


--
-- Name: deliveries_leased; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_leased ON public.deliveries USING btree (destination) WHERE (lease_until IS NOT NULL);


--
-- Name: deliveries_order; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_order ON public.deliveries USING btree (destination, ordering_key, id) WHERE ((state = 'pending'::text) AND (ordering_key IS NOT NULL));


--
-- Name: deliveries_replay; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_replay ON public.deliveries USING btree (replay_of) WHERE (replay_of IS NOT NULL);


--
-- Name: deliveries_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX deliveries_state ON public.deliveries USING btree (state, destination, updated_at);


--
-- Name: events_contact; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_contact ON public.events USING btree (contact, received_at) WHERE (contact IS NOT NULL);


--
-- Name: events_idempotency; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX events_idempotency ON public.events USING btree (source, idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- Name: events_parent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_parent ON public.events USING btree (parent_id) WHERE (parent_id IS NOT NULL);


--
-- Name: events_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_received ON public.events USING btree (received_at);


--
-- Name: events_seq; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_seq ON public.events USING btree (seq);


--
-- Name: events_subject; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_subject ON public.events USING btree (subject, occurred_at) WHERE (subject IS NOT NULL);


--
-- Name: events_type; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_type ON public.events USING btree (event_type, received_at) WHERE (event_type IS NOT NULL);


--
-- Name: rejections_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rejections_at ON public.rejections USING btree (at);


--
-- Name: rejections_source; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rejections_source ON public.rejections USING btree (source, at);


--
-- Name: attempts attempts_delivery_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.attempts
    ADD CONSTRAINT attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES public.deliveries(id) ON DELETE CASCADE;


--
-- Name: deliveries deliveries_event_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.events(id) ON DELETE CASCADE;


--
-- Name: deliveries deliveries_replay_of_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_replay_of_fkey FOREIGN KEY (replay_of) REFERENCES public.deliveries(id) ON DELETE SET NULL;


--
-- PostgreSQL database dump complete
--

\unrestrict QhhXBO0jAVKlagIFlslYg5yDDjaq9rRCsj6Gl7RHx1Nfs1bQyQxt9bRXQMAqJCY

