// Table-driven analyzer suite on the demo fixture catalog (no server needed). Each case names the
// statement kind, output lineage, predicate columns, relations read and flags it must produce, in
// the canonical forms of masking/describe.hpp. A field left null is not checked; `out` starting
// with '~' must only be contained in the description.

#include "masking/analyzer.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <thread>

#include "masking/describe.hpp"

namespace pgveil::masking {
namespace {

const char* const kPatientsStar =
    "id=patients.id:d | full_name=patients.full_name:d | email=patients.email:d | phone=patients.phone:d | "
    "national_id=patients.national_id:d | birth_date=patients.birth_date:d | address=patients.address:d | "
    "nationality=patients.nationality:d | religion=patients.religion:d | "
    "sexual_orientation=patients.sexual_orientation:d | created_at=patients.created_at:d";
const char* const kInvoicesStar =
    "id=invoices.id:d | patient_id=invoices.patient_id:d | amount=invoices.amount:d | iban=invoices.iban:d | "
    "card_number=invoices.card_number:d | paid_at=invoices.paid_at:d";

struct Case {
  const char* sql;
  const char* kind = nullptr;
  const char* out = nullptr;
  const char* pred = nullptr;
  const char* reads = nullptr;
  const char* flags = nullptr;
  std::vector<std::string> path = {"public"};
  int statement = 0;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.sql; }

class AnalyzerCaseTest : public ::testing::TestWithParam<Case> {};

TEST_P(AnalyzerCaseTest, Matches) {
  const auto& c = GetParam();
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  AnalyzeContext ctx{catalog.get(), c.path};
  auto a = analyzer.analyze(c.sql, ctx);
  ASSERT_TRUE(a->parsed) << a->error;
  ASSERT_LT(static_cast<std::size_t>(c.statement), a->statements.size());
  const auto& s = a->statements[c.statement];
  if (c.kind) {
    EXPECT_EQ(statementKindName(s.kind), std::string(c.kind)) << "kind";
  }
  if (c.out) {
    std::string got = describeOutputs(*catalog, s);
    if (c.out[0] == '~') {
      EXPECT_NE(got.find(c.out + 1), std::string::npos) << "outputs: " << got;
    } else {
      EXPECT_EQ(got, c.out) << "outputs";
    }
  }
  if (c.pred) {
    EXPECT_EQ(describePredicates(*catalog, s), c.pred) << "predicates";
  }
  if (c.reads) {
    EXPECT_EQ(describeReads(*catalog, s), c.reads) << "reads";
  }
  if (c.flags) {
    EXPECT_EQ(describeFlags(s), c.flags) << "flags";
  }
}

// clang-format off
const Case kCases[] = {
  // --- plain columns, aliases, stars
  {.sql = "SELECT email FROM patients", .kind = "select", .out = "email=patients.email:d", .pred = "", .reads = "patients:u", .flags = ""},
  {.sql = "SELECT p.email AS e FROM patients p WHERE p.id = 1", .out = "e=patients.email:d", .pred = "patients.id", .reads = "patients:f", .flags = ""},
  {.sql = "SELECT * FROM invoices", .out = kInvoicesStar, .flags = "star"},
  {.sql = "SELECT i.* FROM invoices i LIMIT 10", .out = kInvoicesStar, .flags = "limit=10 star"},
  {.sql = "TABLE patients", .out = kPatientsStar, .flags = "star"},
  {.sql = "SELECT email AS \"Email\" FROM patients", .out = "Email=patients.email:d"},
  {.sql = "SELECT EMAIL FROM PATIENTS", .out = "email=patients.email:d"},
  {.sql = "SELECT \"P\".email FROM patients \"P\"", .out = "email=patients.email:d"},
  {.sql = "SELECT public.patients.email FROM public.patients", .out = "email=patients.email:d"},
  {.sql = "SELECT email FROM ONLY patients", .out = "email=patients.email:d"},
  {.sql = "SELECT email FROM patients TABLESAMPLE SYSTEM (10)", .out = "email=patients.email:d"},
  {.sql = "SELECT email FROM patients WHERE id = 1 FOR UPDATE", .out = "email=patients.email:d", .pred = "patients.id"},
  {.sql = "SELECT 1", .out = "?column?=", .reads = "", .flags = ""},
  {.sql = "SELECT now(), random()", .out = "now= | random="},
  {.sql = "SELECT x.email FROM patients p", .out = "email=?"},
  // --- quoting and lexical tricks
  {.sql = "SELECT \"EMAIL\" FROM crm.\"Users\"", .out = "EMAIL=crm.Users.EMAIL:d"},
  {.sql = "SELECT \"EMAIL\" FROM \"crm\".\"Users\"", .out = "EMAIL=crm.Users.EMAIL:d"},
  {.sql = "SELECT u.\"nick name\" FROM crm.\"Users\" AS u", .out = "nick name=crm.Users.nick name:d"},
  {.sql = "SELECT * FROM crm.\"Users\" u WHERE u.\"ID\" = 1", .out = "ID=crm.Users.ID:d | EMAIL=crm.Users.EMAIL:d | nick name=crm.Users.nick name:d", .pred = "crm.Users.ID", .flags = "star"},
  {.sql = "SELECT U&\"\\0065mail\" FROM patients", .out = "email=patients.email:d"},
  {.sql = "SELECT U&\"!0045MAIL\" UESCAPE '!' FROM crm.\"Users\"", .out = "EMAIL=crm.Users.EMAIL:d"},
  {.sql = "SELECT $$it's$$ AS t, email FROM patients", .out = "t= | email=patients.email:d"},
  {.sql = "SELECT $q$a;b$q$ AS t, phone FROM patients", .out = "t= | phone=patients.phone:d"},
  {.sql = "SELECT /* c */ email -- x\n FROM /* y */ patients", .out = "email=patients.email:d"},
  {.sql = "SELECT/**/email/**/FROM/**/patients/**/WHERE/**/id=1", .out = "email=patients.email:d", .pred = "patients.id"},
  {.sql = "select E'\\x41' as a, national_id from patients", .out = "a= | national_id=patients.national_id:d"},
  // --- search_path
  {.sql = "SELECT email FROM patients", .out = "email=crm.patients.email:d", .path = {"crm"}},
  {.sql = "SELECT email FROM patients", .out = "email=crm.patients.email:d+patients.email:d", .path = {}},
  {.sql = "SELECT id FROM crm.patients", .out = "id=crm.patients.id:d", .reads = "crm.patients:u"},
  {.sql = "SELECT email FROM patients", .out = "email=patients.email:d", .path = {"nosuch", "public"}},
  {.sql = "SELECT relname FROM pg_class", .out = "relname=pg_catalog.pg_class.relname:d", .flags = ""},
  // --- expressions, casts, functions
  {.sql = "SELECT upper(email) FROM patients", .out = "upper=patients.email:e"},
  {.sql = "SELECT email || '@x' AS x FROM patients", .out = "x=patients.email:e"},
  {.sql = "SELECT email::varchar FROM patients", .out = "email=patients.email:e"},
  {.sql = "SELECT CAST(national_id AS text) FROM patients", .out = "national_id=patients.national_id:e"},
  {.sql = "SELECT 42::text", .out = "text="},
  {.sql = "SELECT CASE WHEN religion = 'None' THEN 'x' ELSE 'y' END FROM patients", .out = "case=patients.religion:e"},
  {.sql = "SELECT COALESCE(religion, 'unknown') AS r FROM patients", .out = "r=patients.religion:e"},
  {.sql = "SELECT CASE WHEN religion IS NULL THEN 'n' ELSE religion END FROM patients", .out = "religion=patients.religion:e"},
  {.sql = "SELECT NULLIF(phone, '') FROM patients", .out = "nullif=patients.phone:e"},
  {.sql = "SELECT greatest(birth_date, created_at::date) FROM patients", .out = "greatest=patients.birth_date:e+patients.created_at:e"},
  {.sql = "SELECT ROW(email, phone) FROM patients", .out = "row=patients.email:e+patients.phone:e"},
  {.sql = "SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM patients", .out = "encode=patients.email:e"},
  {.sql = "SELECT md5(national_id) FROM patients", .out = "md5=patients.national_id:e"},
  {.sql = "SELECT substr(phone, 1, 3) FROM patients", .out = "substr=patients.phone:e"},
  {.sql = "SELECT left(email, 1) || '***' FROM patients", .out = "?column?=patients.email:e"},
  {.sql = "SELECT email LIKE '%@example.com' FROM patients", .out = "?column?=patients.email:e"},
  {.sql = "SELECT religion IS NULL AS r FROM patients", .out = "r=patients.religion:e"},
  {.sql = "SELECT amount * 2 AS a FROM invoices", .out = "a=invoices.amount:e"},
  {.sql = "SELECT (ARRAY[email])[1] AS x FROM patients", .out = "x=patients.email:e"},
  {.sql = "SELECT full_name || ' <' || email || '>' AS contact FROM patients", .out = "contact=patients.email:e+patients.full_name:e"},
  {.sql = "SELECT json_build_object('e', email) FROM patients", .out = "json_build_object=patients.email:e"},
  {.sql = "SELECT xmlelement(name e, email) AS x FROM patients", .out = "x=patients.email:e"},
  {.sql = "SELECT email COLLATE \"C\" AS c FROM patients", .out = "c=patients.email:e"},
  {.sql = "SELECT email IN (SELECT email FROM patients) FROM patients", .out = "?column?=patients.email:e"},
  {.sql = "SELECT pg_catalog.upper(email) FROM patients", .out = "upper=patients.email:e", .flags = ""},
  {.sql = "SELECT public.upper(email) FROM patients", .out = "upper=patients.email:e?", .flags = "fn:public.upper"},
  {.sql = "SELECT upper(email) FROM patients", .out = "upper=patients.email:e?", .flags = "fn:upper", .path = {"public", "pg_catalog"}},
  {.sql = "SELECT my_func(email) FROM patients", .out = "my_func=patients.email:e?", .flags = "fn:my_func"},
  {.sql = "SELECT unnest(ARRAY[email, phone]) FROM patients", .out = "unnest=patients.email:e+patients.phone:e"},
  {.sql = "SELECT pg_sleep(1)", .out = "pg_sleep="},
  // --- whole-row references
  {.sql = "SELECT p FROM patients p", .out = "~p=patients.address:e+patients.birth_date:e+patients.created_at:e+patients.email:e"},
  {.sql = "SELECT p::text FROM patients p", .out = "~p=patients.address:e+patients.birth_date:e"},
  {.sql = "SELECT row_to_json(p) FROM patients p", .out = "~row_to_json=patients.address:e"},
  {.sql = "SELECT to_jsonb(p.*) FROM patients p", .out = "~to_jsonb=patients.address:e"},
  {.sql = "SELECT json_agg(p) FROM patients p", .out = "~json_agg=patients.address:e"},
  {.sql = "SELECT (p).email FROM patients p", .out = "~email=patients.address:e"},
  {.sql = "SELECT patients FROM patients", .out = "~patients=patients.address:e"},
  // --- aggregates
  {.sql = "SELECT count(*) FROM patients", .out = "count=", .reads = "patients:u"},
  {.sql = "SELECT count(email) FROM patients", .out = "count=patients.email:c"},
  {.sql = "SELECT count(DISTINCT email) FROM patients", .out = "count=patients.email:c"},
  {.sql = "SELECT count(email) + 1 AS n FROM patients", .out = "n=patients.email:c"},
  {.sql = "SELECT count(upper(email)) FROM patients", .out = "count=patients.email:e"},
  {.sql = "SELECT max(email) FROM patients", .out = "max=patients.email:a"},
  {.sql = "SELECT min(birth_date), avg(amount) FROM patients, invoices", .out = "min=patients.birth_date:a | avg=invoices.amount:a"},
  {.sql = "SELECT string_agg(email, ',') FROM patients", .out = "string_agg=patients.email:a"},
  {.sql = "SELECT array_agg(phone ORDER BY id) FROM patients", .out = "array_agg=patients.phone:a", .pred = "patients.id"},
  {.sql = "SELECT sum(length(notes)) FROM appointments", .out = "sum=appointments.notes:e"},
  {.sql = "SELECT max(upper(email)) FROM patients", .out = "max=patients.email:e"},
  {.sql = "SELECT nationality, count(*) FROM patients GROUP BY nationality", .out = "nationality=patients.nationality:d | count=", .pred = "patients.nationality"},
  {.sql = "SELECT nationality FROM patients GROUP BY 1 HAVING count(*) > 10", .pred = "patients.nationality"},
  {.sql = "SELECT count(*) FROM patients GROUP BY substr(national_id, 1, 3) HAVING max(religion) = 'x'", .pred = "patients.national_id,patients.religion"},
  {.sql = "SELECT nationality, religion, count(*) FROM patients GROUP BY GROUPING SETS ((nationality), (religion))", .pred = "patients.nationality,patients.religion"},
  {.sql = "SELECT nationality, count(*) FROM patients GROUP BY ROLLUP (nationality)", .pred = "patients.nationality"},
  {.sql = "SELECT count(*) FILTER (WHERE religion = 'Hindu') FROM patients", .out = "count=", .pred = "patients.religion"},
  {.sql = "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM invoices", .out = "percentile_cont=invoices.amount:a", .pred = "invoices.amount"},
  {.sql = "SELECT mode() WITHIN GROUP (ORDER BY religion) FROM patients", .out = "mode=patients.religion:a", .pred = "patients.religion"},
  // --- predicates and ordering
  {.sql = "SELECT id FROM patients WHERE national_id LIKE '1%'", .out = "id=patients.id:d", .pred = "patients.national_id", .reads = "patients:f"},
  {.sql = "SELECT id FROM patients WHERE religion = 'Jewish' AND sexual_orientation IS NOT NULL", .pred = "patients.religion,patients.sexual_orientation"},
  {.sql = "SELECT id FROM patients ORDER BY email", .out = "id=patients.id:d", .pred = "patients.email"},
  {.sql = "SELECT email AS e FROM patients ORDER BY e", .pred = "patients.email"},
  {.sql = "SELECT full_name, email FROM patients ORDER BY 2", .pred = "patients.email"},
  {.sql = "SELECT id FROM patients ORDER BY length(email) DESC", .pred = "patients.email"},
  {.sql = "SELECT id FROM patients WHERE phone IN ('1', '2')", .pred = "patients.phone"},
  {.sql = "SELECT id FROM patients WHERE birth_date BETWEEN '1980-01-01' AND '1990-01-01'", .pred = "patients.birth_date"},
  {.sql = "SELECT id FROM patients WHERE email = ANY($1)", .pred = "patients.email"},
  {.sql = "SELECT id FROM patients WHERE email ~ '^a' OR phone SIMILAR TO '1%'", .pred = "patients.email,patients.phone"},
  {.sql = "SELECT DISTINCT ON (nationality) full_name FROM patients ORDER BY nationality, id", .pred = "patients.id,patients.nationality"},
  {.sql = "SELECT DISTINCT religion FROM patients", .out = "religion=patients.religion:d"},
  {.sql = "SELECT id FROM patients WHERE true", .reads = "patients:u"},
  {.sql = "SELECT id FROM patients WHERE 1 = 1 LIMIT 1000", .reads = "patients:u", .flags = "limit=1000"},
  {.sql = "SELECT a.id FROM appointments a WHERE a.patient_id > 0", .reads = "appointments:f"},
  {.sql = "SELECT id FROM patients LIMIT ALL", .flags = ""},
  {.sql = "SELECT id FROM patients LIMIT $1", .flags = "limit=?"},
  {.sql = "SELECT id FROM patients OFFSET 10", .flags = ""},
  {.sql = "SELECT id FROM patients FETCH FIRST 3 ROWS ONLY", .flags = "limit=3"},
  {.sql = "SELECT id FROM patients ORDER BY id FETCH FIRST 3 ROWS WITH TIES", .flags = "limit=3"},
  // --- joins
  {.sql = "SELECT p.full_name, a.doctor FROM patients p JOIN appointments a ON a.patient_id = p.id", .out = "full_name=patients.full_name:d | doctor=appointments.doctor:d", .pred = "appointments.patient_id,patients.id", .reads = "appointments:u patients:u"},
  {.sql = "SELECT * FROM patients p JOIN appointments a USING (id)", .out = "id=patients.id:d | full_name=patients.full_name:d | email=patients.email:d | phone=patients.phone:d | national_id=patients.national_id:d | birth_date=patients.birth_date:d | address=patients.address:d | nationality=patients.nationality:d | religion=patients.religion:d | sexual_orientation=patients.sexual_orientation:d | created_at=patients.created_at:d | patient_id=appointments.patient_id:d | doctor=appointments.doctor:d | scheduled_at=appointments.scheduled_at:d | notes=appointments.notes:d", .pred = "appointments.id,patients.id"},
  {.sql = "SELECT * FROM invoices NATURAL JOIN appointments", .out = "id=invoices.id:d | patient_id=invoices.patient_id:d | amount=invoices.amount:d | iban=invoices.iban:d | card_number=invoices.card_number:d | paid_at=invoices.paid_at:d | doctor=appointments.doctor:d | scheduled_at=appointments.scheduled_at:d | notes=appointments.notes:d", .pred = "appointments.id,appointments.patient_id,invoices.id,invoices.patient_id"},
  {.sql = "SELECT id FROM patients FULL JOIN appointments USING (id)", .out = "id=appointments.id:e+patients.id:e"},
  {.sql = "SELECT id FROM patients RIGHT JOIN appointments USING (id)", .out = "id=appointments.id:d"},
  {.sql = "SELECT p.email FROM patients p LEFT JOIN invoices i ON i.patient_id = p.id WHERE i.amount > 100", .out = "email=patients.email:d", .pred = "invoices.amount,invoices.patient_id,patients.id", .reads = "invoices:f patients:u"},
  {.sql = "SELECT j.doctor FROM (patients p JOIN appointments a ON a.patient_id = p.id) AS j", .out = "doctor=appointments.doctor:d"},
  {.sql = "SELECT * FROM patients, appointments", .out = "~notes=appointments.notes:d", .flags = "star"},
  {.sql = "SELECT p.id, x.doctor FROM patients p CROSS JOIN LATERAL (SELECT a.doctor FROM appointments a WHERE a.patient_id = p.id LIMIT 1) x", .out = "id=patients.id:d | doctor=appointments.doctor:d", .pred = "appointments.patient_id,patients.id", .flags = ""},
  {.sql = "SELECT p.id, l.e FROM patients p, LATERAL (SELECT p.email AS e) l", .out = "id=patients.id:d | e=patients.email:d"},
  {.sql = "SELECT a.doctor, i.amount FROM appointments a JOIN invoices i ON i.patient_id = a.patient_id AND i.iban LIKE 'DE%'", .pred = "appointments.patient_id,invoices.iban,invoices.patient_id"},
  // --- subqueries
  {.sql = "SELECT s.e FROM (SELECT email AS e FROM patients) s", .out = "e=patients.email:d", .reads = "patients:u"},
  {.sql = "SELECT s.x FROM (SELECT lower(email) AS x FROM patients) s", .out = "x=patients.email:e"},
  {.sql = "SELECT x FROM (SELECT y AS x FROM (SELECT email AS y FROM patients) a) b", .out = "x=patients.email:d"},
  {.sql = "SELECT t.a FROM (SELECT email, phone FROM patients) AS t(a, b)", .out = "a=patients.email:d"},
  {.sql = "SELECT (SELECT email FROM patients WHERE id = 1) AS e", .out = "e=patients.email:e", .pred = "patients.id"},
  {.sql = "SELECT a.id, (SELECT p.phone FROM patients p WHERE p.id = a.patient_id) FROM appointments a", .out = "id=appointments.id:d | phone=patients.phone:e", .pred = "appointments.patient_id,patients.id"},
  {.sql = "SELECT id FROM appointments a WHERE EXISTS (SELECT 1 FROM patients p WHERE p.id = a.patient_id AND p.religion = 'Muslim')", .out = "id=appointments.id:d", .pred = "appointments.patient_id,patients.id,patients.religion", .reads = "appointments:f patients:f"},
  {.sql = "SELECT full_name FROM patients WHERE id IN (SELECT patient_id FROM invoices WHERE amount > 500)", .pred = "invoices.amount,invoices.patient_id,patients.id", .reads = "invoices:f patients:f"},
  {.sql = "SELECT id FROM appointments WHERE patient_id = (SELECT id FROM patients WHERE email = 'a@b.c')", .pred = "appointments.patient_id,patients.email,patients.id"},
  {.sql = "SELECT EXISTS (SELECT 1 FROM patients WHERE national_id LIKE '1%') AS e", .out = "e=", .pred = "patients.national_id"},
  {.sql = "SELECT ARRAY(SELECT phone FROM patients LIMIT 3) AS a", .out = "a=patients.phone:e", .flags = ""},
  // --- CTEs
  {.sql = "WITH c AS (SELECT id, email FROM patients) SELECT email FROM c", .out = "email=patients.email:d"},
  {.sql = "WITH c(x, y) AS (SELECT id, phone FROM patients) SELECT y FROM c", .out = "y=patients.phone:d"},
  {.sql = "WITH c AS (SELECT md5(email) AS h FROM patients) SELECT h FROM c", .out = "h=patients.email:e"},
  {.sql = "WITH a AS (SELECT email FROM patients), b AS (SELECT email AS e FROM a) SELECT e FROM b", .out = "e=patients.email:d"},
  {.sql = "WITH patients AS (SELECT 1 AS email) SELECT email FROM patients", .out = "email=", .reads = ""},
  {.sql = "WITH x AS MATERIALIZED (SELECT phone FROM patients) SELECT * FROM x", .out = "phone=patients.phone:d", .flags = "star"},
  {.sql = "WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM patients WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT e FROM r", .out = "e=patients.email:e", .pred = "patients.email,patients.id"},
  {.sql = "WITH RECURSIVE t(id, parent) AS (SELECT id, patient_id FROM appointments WHERE id = 1 UNION SELECT a.id, a.patient_id FROM appointments a JOIN t ON a.patient_id = t.id) SELECT parent FROM t", .out = "parent=appointments.patient_id:e"},
  // CYCLE and SEARCH add columns the analyzer does not derive (the path is an array of the
  // cycle columns' rows): they stay unknown, so masked roles are refused rather than served.
  {.sql = "WITH RECURSIVE t(id, e) AS (SELECT id, email FROM patients WHERE id < 3 UNION ALL SELECT id, e FROM t) CYCLE e SET is_cycle USING path SELECT path, is_cycle FROM t", .out = "path=? | is_cycle=?", .pred = "patients.email,patients.id"},
  {.sql = "WITH RECURSIVE t(id, e) AS (SELECT id, email FROM patients WHERE id < 3 UNION ALL SELECT id, e FROM t) SEARCH DEPTH FIRST BY e SET ord SELECT ord FROM t", .out = "ord=?", .pred = "patients.email,patients.id"},
  {.sql = "WITH d AS (DELETE FROM appointments WHERE id = 1 RETURNING notes) SELECT notes FROM d", .kind = "select", .out = "notes=appointments.notes:d", .pred = "appointments.id"},
  // --- set operations and VALUES
  {.sql = "SELECT email FROM patients UNION SELECT doctor FROM appointments", .out = "email=appointments.doctor:e+patients.email:e"},
  {.sql = "SELECT phone FROM patients EXCEPT SELECT notes FROM appointments", .out = "phone=appointments.notes:e+patients.phone:e"},
  {.sql = "SELECT id FROM patients INTERSECT SELECT patient_id FROM invoices", .out = "id=invoices.patient_id:e+patients.id:e"},
  {.sql = "SELECT email FROM patients UNION ALL SELECT iban FROM invoices ORDER BY 1 LIMIT 5", .out = "email=invoices.iban:e+patients.email:e", .pred = "invoices.iban,patients.email", .flags = "limit=5"},
  {.sql = "VALUES (1, 'a'), (2, 'b')", .kind = "select", .out = "column1= | column2="},
  {.sql = "SELECT v.x FROM (VALUES (1), (2)) AS v(x)", .out = "x="},
  // --- window functions
  {.sql = "SELECT id, row_number() OVER (PARTITION BY nationality ORDER BY birth_date) FROM patients", .out = "id=patients.id:d | row_number=", .pred = "patients.birth_date,patients.nationality"},
  {.sql = "SELECT lag(email) OVER (ORDER BY id) FROM patients", .out = "lag=patients.email:e", .pred = "patients.id"},
  {.sql = "SELECT max(amount) OVER w FROM invoices WINDOW w AS (PARTITION BY patient_id)", .out = "max=invoices.amount:a", .pred = "invoices.patient_id"},
  {.sql = "SELECT rank() OVER (ORDER BY national_id) FROM patients", .out = "rank=", .pred = "patients.national_id"},
  // --- set-returning functions
  {.sql = "SELECT x FROM patients p, unnest(ARRAY[p.email]) AS x", .out = "x=patients.email:e"},
  {.sql = "SELECT j.key, j.value FROM patients p, jsonb_each(to_jsonb(p)) j", .out = "~value=patients.address:e"},
  {.sql = "SELECT g FROM generate_series(1, 10) g", .out = "g="},
  {.sql = "SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS t(v, n)", .out = "v= | n="},
  {.sql = "SELECT * FROM my_srf()", .out = "?column?=?", .flags = "fn:my_srf incomplete star"},
  {.sql = "SELECT * FROM my_srf(email) AS f(a text, b int), patients", .out = "~a=?", .flags = "fn:my_srf star"},
  {.sql = "SELECT r.a FROM json_to_record('{\"a\":1}') AS r(a int)", .out = "a="},
  // --- views
  {.sql = "SELECT contact FROM patient_contacts", .out = "contact=patient_contacts.contact:d+patients.email:d", .reads = "patient_contacts:u patients:u"},
  {.sql = "SELECT upper(name) FROM patient_contacts WHERE id = 3", .out = "upper=patient_contacts.name:e+patients.full_name:e", .pred = "patient_contacts.id,patients.id"},
  {.sql = "SELECT visits FROM doctors_view", .out = "visits=doctors_view.visits:d"},
  // --- unknown relations
  {.sql = "SELECT * FROM nowhere", .out = "?column?=?", .flags = "incomplete star unknownrel"},
  {.sql = "SELECT n.x FROM nowhere n", .out = "x=?", .flags = "unknownrel"},
  {.sql = "SELECT email FROM patients, nowhere", .out = "email=patients.email:d", .flags = "unknownrel"},
  {.sql = "SELECT secret FROM patients, nowhere", .out = "secret=?", .flags = "unknownrel"},
  // --- prepared statements, cursors, EXPLAIN
  {.sql = "PREPARE q(int) AS SELECT email FROM patients WHERE id = $1", .kind = "prepare", .out = "email=patients.email:d", .pred = "patients.id", .reads = "patients:f"},
  {.sql = "EXECUTE q(1)", .kind = "execute"},
  {.sql = "DEALLOCATE q", .kind = "deallocate"},
  {.sql = "DEALLOCATE ALL", .kind = "deallocate"},
  {.sql = "DECLARE c CURSOR FOR SELECT phone FROM patients", .kind = "declare_cursor", .out = "phone=patients.phone:d", .reads = "patients:u"},
  {.sql = "DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM invoices", .kind = "declare_cursor", .out = kInvoicesStar, .flags = "star"},
  {.sql = "FETCH 10 FROM c", .kind = "fetch"},
  {.sql = "FETCH ALL IN c", .kind = "fetch"},
  {.sql = "MOVE 10 IN c", .kind = "fetch"},
  {.sql = "CLOSE c", .kind = "close_portal"},
  {.sql = "EXPLAIN SELECT email FROM patients", .kind = "explain", .out = "", .reads = "patients:u"},
  {.sql = "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM patients", .kind = "explain", .flags = "star"},
  // --- COPY
  {.sql = "COPY patients TO STDOUT", .kind = "copy_to", .out = kPatientsStar, .reads = "patients:u", .flags = "star"},
  {.sql = "COPY patients (id, email) TO STDOUT WITH (FORMAT csv)", .kind = "copy_to", .out = "id=patients.id:d | email=patients.email:d"},
  {.sql = "COPY (SELECT email FROM patients WHERE id < 10) TO STDOUT", .kind = "copy_to", .out = "email=patients.email:d", .pred = "patients.id"},
  {.sql = "COPY (SELECT upper(phone) FROM patients) TO STDOUT WITH (FORMAT binary)", .kind = "copy_to", .out = "upper=patients.phone:e"},
  {.sql = "COPY patients FROM STDIN", .kind = "copy_from", .flags = ""},
  {.sql = "COPY patients TO '/tmp/x'", .kind = "copy_to", .flags = "file star"},
  {.sql = "COPY (SELECT 1) TO PROGRAM 'curl http://x'", .kind = "copy_to", .flags = "file"},
  {.sql = "COPY audit_log FROM PROGRAM 'cat /etc/passwd'", .kind = "copy_from", .flags = "file"},
  // --- writes
  {.sql = "INSERT INTO audit_log(payload) SELECT email FROM patients", .kind = "insert", .reads = "patients:u", .flags = "copies"},
  {.sql = "INSERT INTO audit_log(id, payload) VALUES (1, 'x')", .kind = "insert", .flags = ""},
  {.sql = "INSERT INTO audit_log(payload) VALUES ('x') RETURNING id, payload", .kind = "insert", .out = "id=audit_log.id:d | payload=audit_log.payload:d", .flags = "returning"},
  {.sql = "INSERT INTO audit_log AS a (id, payload) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET payload = excluded.payload", .kind = "insert"},
  {.sql = "UPDATE patients SET phone = '1' WHERE id = 5", .kind = "update", .pred = "patients.id", .flags = ""},
  {.sql = "UPDATE appointments SET notes = p.email FROM patients p WHERE p.id = appointments.patient_id", .kind = "update", .pred = "appointments.patient_id,patients.id", .flags = "copies"},
  {.sql = "UPDATE appointments SET notes = (SELECT email FROM patients WHERE id = 1)", .kind = "update", .flags = "copies"},
  {.sql = "UPDATE appointments a SET doctor = 'x' FROM invoices i WHERE EXISTS (SELECT 1 WHERE i.patient_id = a.patient_id)", .kind = "update", .reads = "invoices:f"},
  {.sql = "UPDATE patients SET phone = '0' WHERE id = 1 RETURNING email", .kind = "update", .out = "email=patients.email:d", .flags = "returning"},
  {.sql = "DELETE FROM appointments WHERE scheduled_at < now() RETURNING notes", .kind = "delete", .out = "notes=appointments.notes:d", .pred = "appointments.scheduled_at", .flags = "returning"},
  {.sql = "DELETE FROM invoices i USING patients p WHERE p.id = i.patient_id AND p.religion = 'x'", .kind = "delete", .pred = "invoices.patient_id,patients.id,patients.religion"},
  {.sql = "MERGE INTO audit_log a USING patients p ON a.id = p.id WHEN MATCHED THEN UPDATE SET payload = p.email WHEN NOT MATCHED THEN INSERT (id, payload) VALUES (p.id, p.email)", .kind = "merge", .flags = "copies"},
  {.sql = "CREATE TABLE t AS SELECT email FROM patients", .kind = "ddl", .flags = "copies"},
  {.sql = "SELECT email INTO t2 FROM patients", .kind = "ddl", .flags = "copies"},
  {.sql = "CREATE VIEW v AS SELECT phone FROM patients", .kind = "ddl", .flags = "copies"},
  {.sql = "CREATE MATERIALIZED VIEW mv AS SELECT * FROM patients", .kind = "ddl", .flags = "copies"},
  {.sql = "CREATE TABLE x(id int)", .kind = "ddl", .flags = ""},
  {.sql = "CREATE RULE r AS ON INSERT TO audit_log DO ALSO INSERT INTO audit_log VALUES (1, 'x')", .kind = "ddl", .flags = "copies dynamic"},
  {.sql = "CREATE FUNCTION f() RETURNS text AS $$ SELECT email FROM patients LIMIT 1 $$ LANGUAGE sql", .kind = "ddl", .flags = "copies dynamic"},
  {.sql = "TRUNCATE appointments", .kind = "ddl"},
  // --- identity and settings
  {.sql = "SET ROLE admin", .kind = "set", .flags = "identity"},
  {.sql = "SET SESSION AUTHORIZATION admin", .kind = "set", .flags = "identity"},
  {.sql = "RESET ROLE", .kind = "reset", .flags = "identity"},
  {.sql = "SET LOCAL ROLE admin", .kind = "set", .flags = "identity"},
  {.sql = "SELECT set_config('role', 'admin', false)", .kind = "select", .flags = "identity"},
  {.sql = "SELECT set_config(name, 'x', false) FROM (VALUES ('role')) v(name)", .flags = "identity"},
  {.sql = "SELECT set_config('application_name', email, false) FROM patients", .out = "set_config=patients.email:e", .flags = ""},
  {.sql = "SELECT set_config('search_path', 'crm', false)", .flags = ""},
  {.sql = "SET search_path TO crm, public", .kind = "set", .flags = ""},
  {.sql = "SHOW search_path", .kind = "show"},
  {.sql = "GRANT admin TO support", .kind = "ddl", .flags = "identity"},
  {.sql = "ALTER ROLE support SET role = 'admin'", .kind = "ddl", .flags = "identity"},
  {.sql = "BEGIN", .kind = "transaction"},
  {.sql = "SAVEPOINT s1", .kind = "transaction"},
  {.sql = "COMMIT", .kind = "transaction"},
  // --- value-revealing catalogs, files, dynamic SQL
  {.sql = "SELECT * FROM pg_stats WHERE tablename = 'patients'", .flags = "catalogs star"},
  {.sql = "SELECT most_common_vals FROM pg_catalog.pg_stats", .flags = "catalogs"},
  {.sql = "SELECT * FROM pg_catalog.pg_statistic", .flags = "catalogs star"},
  {.sql = "SELECT query FROM pg_stat_activity", .flags = "catalogs"},
  {.sql = "SELECT pg_stat_get_backend_activity(1)", .flags = "catalogs"},
  {.sql = "SELECT data FROM pg_largeobject", .flags = "catalogs"},
  {.sql = "SELECT pg_read_file('/etc/passwd')", .flags = "file"},
  {.sql = "SELECT lo_export(1234, '/tmp/x')", .flags = "file"},
  {.sql = "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", .out = "a=?", .flags = "file star"},
  {.sql = "SELECT query_to_xml('select * from patients', true, false, '')", .flags = "dynamic"},
  {.sql = "SELECT table_to_xml('patients', true, false, '')", .flags = "dynamic"},
  {.sql = "DO $$BEGIN PERFORM 1; END$$", .kind = "do", .flags = "copies dynamic"},
  {.sql = "LOAD 'plpgsql'", .kind = "other", .flags = "file"},
  {.sql = "CALL my_proc(1)", .kind = "call", .flags = "fn:my_proc"},
  {.sql = "LISTEN ch", .kind = "listen"},
  {.sql = "NOTIFY ch, 'x'", .kind = "notify"},
  {.sql = "UNLISTEN *", .kind = "unlisten"},
  {.sql = "LOCK TABLE patients", .kind = "other"},
  {.sql = "DISCARD ALL", .kind = "other"},
  {.sql = "VACUUM patients", .kind = "other"},
  // --- multi-statement strings
  {.sql = "SELECT 1; SELECT email FROM patients", .out = "email=patients.email:d", .statement = 1},
  {.sql = "SET ROLE admin; SELECT email FROM patients", .kind = "set", .flags = "identity", .statement = 0},
  {.sql = "", .kind = "empty"},
  {.sql = ";", .kind = "empty"},
  {.sql = "-- just a comment", .kind = "empty"},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Queries, AnalyzerCaseTest, ::testing::ValuesIn(kCases));

TEST(AnalyzerTest, CaseCount) { EXPECT_GE(std::size(kCases), 150u); }

// Everything an analysis says that policy, gate and rules read (not the text or its offsets).
std::string fullDescription(const Catalog& cat, const Analysis& a) {
  std::string out = a.parsed ? "parsed" : "unparsed:" + a.error;
  auto one = [&](const StatementAnalysis& s) {
    out += "\n" + std::string(statementKindName(s.kind)) + " " + s.nodeType + " rows=" + std::to_string(s.returnsRows) +
           " out=[" + describeOutputs(cat, s) + "] pred=[" + describePredicates(cat, s) + "] reads=[" +
           describeReads(cat, s) + "] flags=[" + describeFlags(s) + "] written=[" + describeLineage(cat, s.writtenValues) +
           "] side=[" + describeLineage(cat, s.sideChannelValues) + "] param=" + s.parameter + "=" + s.parameterValue +
           " name=" + s.name + " copy=" + s.copyFormat;
    for (auto w : s.writes) out += " w" + std::to_string(w);
    for (const auto& f : s.setConfigParameters) out += " sc:" + f;
    for (const auto& f : s.riskyFunctions) out += " risky:" + f;
    for (const auto& n : s.notes) out += " note:" + n;
  };
  for (const auto& s : a.statements) {
    one(s);
    if (s.inner) one(*s.inner);
  }
  return out;
}

// Replaces every literal of `sql` by the `variant`-th value of its class.
std::string withOtherLiterals(const std::string& sql, const std::vector<SqlLiteral>& lits, int variant) {
  static const char* const ints[] = {"0", "7", "2147483647", "0042"};
  static const char* const nums[] = {"0.5", "1e3", "9999999999", "3."};
  static const char* const strs[] = {"''", "'x'", "'it''s -- /* not a comment'", "'2020-01-01'"};
  std::string out;
  std::size_t pos = 0;
  for (const auto& l : lits) {
    out.append(sql, pos, l.offset - pos);
    std::size_t end = l.offset;
    if (l.kind == SqlLiteral::Kind::String) {
      end = sql.find('\'', end + 1);
      while (end + 1 < sql.size() && sql[end + 1] == '\'') end = sql.find('\'', end + 2);
      ++end;
    } else {
      while (end < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[end])) || sql[end] == '.' ||
                                  ((sql[end] == '+' || sql[end] == '-') && (sql[end - 1] == 'e' || sql[end - 1] == 'E')))) {
        ++end;
      }
    }
    out += l.kind == SqlLiteral::Kind::Integer ? ints[variant] : l.kind == SqlLiteral::Kind::Numeric ? nums[variant] : strs[variant];
    pos = end;
  }
  out.append(sql, pos);
  return out;
}

// The property the shape cache rests on: when the analyzer calls a text literal-insensitive,
// every text of the same shape (other constants of the same classes) analyzes identically.
// Run over every case of the table above and over statements where constants do matter.
TEST(LiteralInsensitivityTest, SameShapeAnalyzesIdentically) {
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  std::vector<std::string> texts;
  for (const auto& c : kCases) texts.emplace_back(c.sql);
  for (const char* extra : {
           "SELECT email FROM patients LIMIT 5", "SELECT email FROM patients OFFSET 3", "SELECT email, id FROM patients ORDER BY 1",
           "SELECT nationality, count(*) FROM patients GROUP BY 1", "SELECT DISTINCT ON (1) email FROM patients",
           "SELECT set_config('search_path', 'public', false)", "SELECT 'patients'::regclass", "SELECT CAST('patients' AS regclass)",
           "SELECT * FROM generate_series(1, 5)", "SELECT email FROM patients FETCH FIRST 3 ROWS ONLY",
           "SELECT email FROM patients WHERE id = -5", "SELECT email FROM patients WHERE id = - 5 OR id = -2.5",
           "SELECT email, 'x' AS tag, 3 AS n FROM patients WHERE full_name LIKE 'J%' AND id BETWEEN 1 AND 100",
           "UPDATE patients SET phone = '123' WHERE id = 42", "DELETE FROM appointments WHERE id = 7",
           "INSERT INTO appointments (patient_id, notes) VALUES (1, 'x'), (2, 'y')",
           "SELECT email FROM patients WHERE id IN (1, 2, 3) AND created_at > now() - interval '7 days'",
           "SELECT CASE WHEN id > 10 THEN email ELSE 'hidden' END FROM patients",
           "SELECT email::varchar(3) FROM patients WHERE id = 1",
           "SELECT lag(email, 1) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM patients",
           "SELECT email FROM patients WHERE id = 1 FOR UPDATE", "SELECT 1; SELECT 2",
           "SELECT (SELECT email FROM patients p2 WHERE p2.id = p.id LIMIT 1) FROM patients p WHERE id = 3",
           "SELECT email FROM patients p JOIN invoices i ON i.patient_id = p.id AND i.amount > 100.5"}) {
    texts.emplace_back(extra);
  }
  int insensitive = 0, checked = 0;
  for (const auto& sql : texts) {
    std::string shape;
    std::vector<SqlLiteral> lits;
    if (!literalShape(sql, shape, lits) || lits.empty()) continue;
    AnalyzeContext ctx{catalog.get(), {"public"}};
    auto a = analyzer.analyze(sql, ctx, &lits);
    if (!a->literalInsensitive) continue;
    ++insensitive;
    std::string want = fullDescription(*catalog, *a);
    for (int v = 0; v < 4; ++v) {
      std::string other = withOtherLiterals(sql, lits, v);
      std::string otherShape;
      std::vector<SqlLiteral> otherLits;
      ASSERT_TRUE(literalShape(other, otherShape, otherLits)) << other;
      ASSERT_EQ(otherShape, shape) << sql << "\n" << other;
      auto b = analyzer.analyze(other, ctx, &otherLits);
      EXPECT_TRUE(b->literalInsensitive) << other;
      EXPECT_EQ(fullDescription(*catalog, *b), want) << sql << "\n  vs\n" << other;
      ++checked;
    }
  }
  EXPECT_GE(insensitive, 40);
  EXPECT_GE(checked, 160);
}

TEST(LiteralInsensitivityTest, ConstantsThatMatterAreNotShared) {
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  auto insensitive = [&](const std::string& sql) {
    std::string shape;
    std::vector<SqlLiteral> lits;
    if (!literalShape(sql, shape, lits)) return false;
    return analyzer.analyze(sql, {catalog.get(), {"public"}}, &lits)->literalInsensitive;
  };
  EXPECT_TRUE(insensitive("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"));
  EXPECT_TRUE(insensitive("SELECT email FROM patients WHERE id = -5"));
  EXPECT_TRUE(insensitive("UPDATE patients SET phone = '1' WHERE id = 2"));
  EXPECT_TRUE(insensitive("SELECT email FROM patients WHERE birth_date > date '2000-01-01'"));
  for (const char* sql : {
           "SELECT email FROM patients LIMIT 5", "SELECT email FROM patients OFFSET 5",
           "SELECT email FROM patients FETCH FIRST 3 ROWS ONLY", "SELECT email, id FROM patients ORDER BY 1",
           "SELECT nationality FROM patients GROUP BY 1", "SELECT DISTINCT ON (1) email FROM patients",
           "SELECT set_config('search_path', 'x', false)", "SELECT set_config('role', 'admin', false)",
           "SELECT 'patients'::regclass", "SELECT lower('x')", "SELECT * FROM generate_series(1, 5)",
           "SELECT 1; SELECT 2", "SET search_path = 'x'", "SET ROLE 'admin'", "COPY (SELECT 1) TO STDOUT",
           "EXPLAIN SELECT 1", "PREPARE p AS SELECT 1", "SELECT email::varchar(3) FROM patients",
           "SELECT email FROM patients WHERE id = (SELECT 1 LIMIT 1)", "SELECT email FROM patients TABLESAMPLE SYSTEM (10)",
           "SELECT 'a'\n'b'",
           "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) CYCLE n SET is_cycle TO 'Y' DEFAULT 'N' "
           "USING path SELECT n FROM t"}) {
    EXPECT_FALSE(insensitive(sql)) << sql;
  }
}

TEST(AnalyzerTest, ParseErrorIsReported) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze("SELEC email FROM patients", {catalog.get(), {"public"}});
  EXPECT_FALSE(a->parsed);
  EXPECT_NE(a->error.find("syntax error"), std::string::npos) << a->error;
}

TEST(AnalyzerTest, StatementLocations) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  std::string sql = "SELECT 1; SELECT email FROM patients";
  auto a = analyzer.analyze(sql, {catalog.get(), {"public"}});
  ASSERT_EQ(a->statements.size(), 2u);
  EXPECT_EQ(sql.substr(a->statements[1].location), " SELECT email FROM patients");
}

TEST(AnalyzerTest, OversizedQueryIsRefusedUnparsed) {
  Analyzer analyzer({.maxQueryBytes = 1000});
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze("SELECT '" + std::string(2000, 'x') + "'", {catalog.get(), {"public"}});
  EXPECT_TRUE(a->refused);
  EXPECT_FALSE(a->parsed);
  EXPECT_NE(a->error.find("exceeds"), std::string::npos);
}

// A 64,000-term expression: refused cleanly, never a crash (run on a thread with a normal stack).
TEST(AnalyzerTest, HugeExpressionIsRefusedNotCrashing) {
  std::string sql = "SELECT 1";
  for (int i = 0; i < 64000; ++i) sql += "+1";
  std::shared_ptr<const Analysis> a;
  std::thread t([&] {
    Analyzer analyzer;
    auto catalog = makeDemoCatalog();
    a = analyzer.analyze(sql, {catalog.get(), {"public"}});
  });
  t.join();
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->refused || !a->parsed);
  EXPECT_FALSE(a->error.empty());
}

TEST(AnalyzerTest, DeepParenthesesAreRefused) {
  std::string sql = "SELECT " + std::string(20000, '(') + "1" + std::string(20000, ')');
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze(sql, {catalog.get(), {"public"}});
  EXPECT_FALSE(a->parsed && !a->refused);
}

TEST(AnalyzerTest, ModeratelyDeepExpressionStillAnalyzed) {
  std::string sql = "SELECT email";
  for (int i = 0; i < 300; ++i) sql += " || 'x'";
  sql += " AS e FROM patients";
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze(sql, {catalog.get(), {"public"}});
  ASSERT_TRUE(a->parsed) << a->error;
  EXPECT_EQ(describeOutputs(*catalog, a->statements[0]), "e=patients.email:e");
}

TEST(AnalyzerTest, FingerprintIgnoresConstantsAndNormalizedHidesThem) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze("SELECT email FROM patients WHERE national_id = '123-45-6789'", {catalog.get(), {"public"}});
  auto b = analyzer.analyze("SELECT email FROM patients WHERE national_id = '987-65-4321'", {catalog.get(), {"public"}});
  auto c = analyzer.analyze("SELECT phone FROM patients WHERE national_id = '987-65-4321'", {catalog.get(), {"public"}});
  EXPECT_FALSE(a->fingerprint().empty());
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  EXPECT_NE(a->fingerprint(), c->fingerprint());
  EXPECT_EQ(a->normalized(), "SELECT email FROM patients WHERE national_id = $1");
  EXPECT_EQ(a->normalized().find("123"), std::string::npos);
}

TEST(AnalyzerTest, ParameterValues) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze("SET search_path TO crm, public; SET application_name = 'x'; RESET ALL",
                            {catalog.get(), {"public"}});
  ASSERT_EQ(a->statements.size(), 3u);
  EXPECT_EQ(a->statements[0].parameter, "search_path");
  EXPECT_EQ(a->statements[0].parameterValue, "crm, public");
  EXPECT_EQ(a->statements[1].parameter, "application_name");
  EXPECT_EQ(a->statements[1].parameterValue, "x");
  EXPECT_EQ(a->statements[2].parameter, "all");
}

TEST(AnalyzerTest, NamesOfPreparedStatementsAndCursors) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto a = analyzer.analyze("PREPARE \"Q1\" AS SELECT 1; EXECUTE \"Q1\"; DECLARE cur CURSOR FOR SELECT 1; FETCH 5 cur",
                            {catalog.get(), {"public"}});
  ASSERT_EQ(a->statements.size(), 4u);
  EXPECT_EQ(a->statements[0].name, "Q1");
  EXPECT_EQ(a->statements[1].name, "Q1");
  EXPECT_EQ(a->statements[2].name, "cur");
  EXPECT_EQ(a->statements[3].name, "cur");
  EXPECT_TRUE(a->statements[3].returnsRows);
}

TEST(CatalogTest, ResolutionAndMembership) {
  auto c = makeDemoCatalog();
  EXPECT_EQ(c->resolve("patients", {"public"}).at(0)->schema, "public");
  EXPECT_EQ(c->resolve("patients", {"crm", "public"}).at(0)->schema, "crm");
  EXPECT_EQ(c->resolve("patients", {}).size(), 2u);
  EXPECT_EQ(c->resolve("pg_class", {"public"}).at(0)->schema, "pg_catalog");
  EXPECT_TRUE(c->resolve("nothing", {"public"}).empty());
  EXPECT_TRUE(c->isMemberOf("support", "support_team"));
  EXPECT_TRUE(c->isMemberOf("support", "support"));
  EXPECT_FALSE(c->isMemberOf("analyst", "support_team"));
  EXPECT_EQ(c->byOid(16400)->name, "patients");
  EXPECT_EQ(c->byOid(16400)->columnByAttnum(3)->name, "email");
}

}  // namespace
}  // namespace pgveil::masking

#include "masking/analysis_cache.hpp"

namespace pgveil::masking {
namespace {

TEST(AnalysisCacheTest, HitsMissesAndContext) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  AnalysisCache cache(1 << 20);
  auto ctxKey = AnalysisCache::contextKey(1, "public");
  EXPECT_EQ(cache.find("SELECT 1", ctxKey), nullptr);
  auto a = analyzer.analyze("SELECT 1", {catalog.get(), {"public"}});
  cache.insert("SELECT 1", ctxKey, a);
  EXPECT_EQ(cache.find("SELECT 1", ctxKey), a);
  // Same text under another search_path or catalog generation is another entry.
  EXPECT_EQ(cache.find("SELECT 1", AnalysisCache::contextKey(1, "crm")), nullptr);
  EXPECT_EQ(cache.find("SELECT 1", AnalysisCache::contextKey(2, "public")), nullptr);
  EXPECT_EQ(cache.find("SELECT  1", ctxKey), nullptr);
  auto s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 4u);
  EXPECT_EQ(s.entries, 1u);
}

TEST(AnalysisCacheTest, ShapeEntriesServeOtherConstantsOnly) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  AnalysisCache cache(1 << 20);
  auto lookup = [&](const std::string& sql) {
    std::string shape;
    std::vector<SqlLiteral> lits;
    EXPECT_TRUE(literalShape(sql, shape, lits));
    if (auto hit = cache.find(sql, 1, [&] { return &shape; })) return hit;
    auto a = analyzer.analyze(sql, {catalog.get(), {"public"}}, &lits);
    cache.insert(sql, 1, a);
    cache.insertShape(shape, 1, a);
    return std::shared_ptr<const Analysis>();
  };
  EXPECT_EQ(lookup("SELECT email FROM patients WHERE id = 1"), nullptr);
  auto hit = lookup("SELECT email FROM patients WHERE id = 2");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->sql, "SELECT email FROM patients WHERE id = 1");
  // LIMIT's value matters: never shared by shape, each text analyzed.
  EXPECT_EQ(lookup("SELECT email FROM patients LIMIT 1"), nullptr);
  EXPECT_EQ(lookup("SELECT email FROM patients LIMIT 100000"), nullptr);
  auto s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.shapeHits, 1u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.entries, 4u);  // three texts, one shape
  // Another context does not see the shape.
  std::string shape;
  std::vector<SqlLiteral> lits;
  ASSERT_TRUE(literalShape("SELECT email FROM patients WHERE id = 3", shape, lits));
  EXPECT_EQ(cache.find("SELECT email FROM patients WHERE id = 3", 2, [&] { return &shape; }), nullptr);
  EXPECT_NE(cache.find("SELECT email FROM patients WHERE id = 3", 1, [&] { return &shape; }), nullptr);
  // The shape is only asked for when the exact text missed.
  int asked = 0;
  EXPECT_NE(cache.find("SELECT email FROM patients WHERE id = 1", 1, [&] {
    ++asked;
    return &shape;
  }), nullptr);
  EXPECT_EQ(asked, 0);
}

TEST(AnalysisCacheTest, EvictsLeastRecentlyUsedWithinBudget) {
  Analyzer analyzer;
  auto catalog = makeDemoCatalog();
  auto one = analyzer.analyze("SELECT email FROM patients WHERE id = 0", {catalog.get(), {"public"}});
  std::size_t per = one->memoryEstimate() + 200;
  AnalysisCache cache(per * 10);
  std::vector<std::string> texts;
  for (int i = 0; i < 30; ++i) texts.push_back("SELECT email FROM patients WHERE id = " + std::to_string(i));
  for (const auto& t : texts) {
    cache.insert(t, 7, analyzer.analyze(t, {catalog.get(), {"public"}}));
    (void)cache.find(texts[0], 7);  // keep the first one hot
  }
  auto s = cache.stats();
  EXPECT_LE(s.bytes, per * 10);
  EXPECT_GT(s.evictions, 15u);
  EXPECT_NE(cache.find(texts[0], 7), nullptr);   // recently used: kept
  EXPECT_EQ(cache.find(texts[1], 7), nullptr);   // old: evicted
  EXPECT_NE(cache.find(texts[29], 7), nullptr);  // newest: kept
}

}  // namespace
}  // namespace pgveil::masking
