// Built-in function knowledge for lineage: which functions only transform their arguments,
// which aggregate, which reach outside the database. Anything not listed is Unknown and its
// result is treated as sensitive by callers (fail closed).

#include <string>
#include <unordered_map>

#include "masking/analyzer.hpp"

namespace pgveil::masking {

namespace {

const std::unordered_map<std::string_view, FunctionClass>& table() {
  static const auto* t = [] {
    auto* m = new std::unordered_map<std::string_view, FunctionClass>();
    auto add = [m](FunctionClass c, std::initializer_list<std::string_view> names) {
      for (auto n : names) (*m)[n] = c;
    };
    add(FunctionClass::Scalar,
        {"upper", "lower", "initcap", "substr", "substring", "left", "right", "length", "char_length",
         "character_length", "octet_length", "bit_length", "trim", "btrim", "ltrim", "rtrim", "lpad", "rpad",
         "replace", "translate", "reverse", "repeat", "concat", "concat_ws", "format", "split_part", "strpos",
         "position", "overlay", "md5", "sha224", "sha256", "sha384", "sha512", "encode", "decode", "convert",
         "convert_from", "convert_to", "to_hex", "ascii", "chr", "quote_ident", "quote_literal", "quote_nullable",
         "regexp_replace", "regexp_match", "regexp_like", "regexp_count", "regexp_instr", "regexp_substr",
         "starts_with", "to_char", "to_date", "to_timestamp", "to_number", "date_trunc", "date_part", "extract",
         "date_bin", "age", "justify_days", "justify_hours", "justify_interval", "make_date", "make_time",
         "make_timestamp", "make_timestamptz", "make_interval", "timezone", "isfinite", "abs", "ceil", "ceiling",
         "floor", "round", "trunc", "sign", "sqrt", "cbrt", "power", "pow", "exp", "ln", "log", "log10", "mod",
         "div", "gcd", "lcm", "width_bucket", "greatest", "least", "coalesce", "nullif", "row_to_json",
         "to_json", "to_jsonb", "json_build_object", "jsonb_build_object", "json_build_array",
         "jsonb_build_array", "json_object", "jsonb_object", "array_to_json", "jsonb_set", "jsonb_insert",
         "jsonb_strip_nulls", "json_strip_nulls", "jsonb_pretty", "jsonb_typeof", "json_typeof",
         "jsonb_extract_path", "jsonb_extract_path_text", "json_extract_path", "json_extract_path_text",
         "jsonb_path_query_first", "jsonb_path_exists", "jsonb_path_match", "json_array_length",
         "jsonb_array_length", "array_append", "array_prepend", "array_cat", "array_length", "array_lower",
         "array_upper", "array_dims", "array_ndims", "array_position", "array_positions", "array_remove",
         "array_replace", "array_to_string", "string_to_array", "cardinality", "array_fill", "trim_array",
         "string_to_table", "regexp_split_to_array", "hashtext", "hashtextextended", "crc32", "num_nonnulls",
         "num_nulls", "textlen", "text", "int4", "int8", "numeric", "float8", "bool", "date", "timestamp",
         "timestamptz", "uuid", "inet", "host", "network", "masklen", "family", "bytea", "set_bit", "get_bit",
         "set_byte", "get_byte", "bit_count", "pg_column_size", "isempty", "lower_inf", "upper_inf", "range_merge",
         "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange", "to_tsvector", "to_tsquery",
         "plainto_tsquery", "websearch_to_tsquery", "phraseto_tsquery", "ts_rank", "ts_headline", "setweight",
         "strip", "soundex", "difference", "levenshtein", "similarity", "xmlelement", "xmlforest", "xmlconcat",
         "xmlparse", "xmlserialize", "xmlroot", "xpath", "xpath_exists", "xmltext", "normalize", "is_normalized",
         "unistr", "casefold", "similar_to_escape", "similar_escape", "like_escape", "parse_ident", "digest", "hmac", "crypt", "gen_salt"});
    add(FunctionClass::CountAggregate, {"count"});
    add(FunctionClass::Aggregate,
        {"min", "max", "sum", "avg", "string_agg", "array_agg", "json_agg", "jsonb_agg", "json_object_agg",
         "jsonb_object_agg", "xmlagg", "every", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor", "stddev",
         "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "mode", "percentile_cont",
         "percentile_disc", "corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count",
         "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy", "range_agg",
         "range_intersect_agg", "any_value", "json_agg_strict", "jsonb_agg_strict"});
    add(FunctionClass::RankWindow, {"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile"});
    add(FunctionClass::ValueWindow, {"lag", "lead", "first_value", "last_value", "nth_value"});
    add(FunctionClass::SetReturning,
        {"unnest", "generate_series", "generate_subscripts", "jsonb_each", "json_each", "jsonb_each_text",
         "json_each_text", "jsonb_array_elements", "json_array_elements", "jsonb_array_elements_text",
         "json_array_elements_text", "jsonb_object_keys", "json_object_keys", "jsonb_to_record", "json_to_record",
         "jsonb_to_recordset", "json_to_recordset", "jsonb_populate_record", "json_populate_record",
         "jsonb_populate_recordset", "json_populate_recordset", "jsonb_path_query", "regexp_matches",
         "regexp_split_to_table", "string_to_table"});
    add(FunctionClass::FileOrNetwork,
        {"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_ls_logdir", "pg_ls_waldir", "pg_ls_tmpdir",
         "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir", "pg_ls_replslotdir",
         "pg_stat_file", "pg_file_write", "pg_file_rename", "pg_file_unlink", "lo_import", "lo_export",
         "lo_get", "lo_put", "lo_from_bytea", "lo_open", "lo_read", "loread", "lowrite", "lo_creat", "lo_create",
         "lo_unlink", "lo_truncate", "lo_lseek", "lo_tell", "lo_close", "dblink", "dblink_exec", "dblink_connect",
         "dblink_connect_u", "dblink_send_query", "dblink_get_result", "dblink_open", "dblink_fetch",
         "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes", "pg_logical_slot_get_binary_changes",
         "pg_logical_slot_peek_binary_changes", "pg_execute_server_program", "pg_logical_emit_message"});
    add(FunctionClass::DynamicSql,
        {"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "table_to_xml", "table_to_xmlschema",
         "table_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "schema_to_xml",
         "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema",
         "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite"});
    add(FunctionClass::SetConfig, {"set_config"});
    add(FunctionClass::NoLineage,
        {"now", "current_timestamp", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
         "timeofday", "random", "gen_random_uuid", "version", "current_database", "current_schema",
         "current_schemas", "current_user", "session_user", "current_setting", "pg_backend_pid", "txid_current",
         "pg_current_xact_id", "pg_sleep", "pg_typeof", "inet_server_addr", "inet_server_port", "inet_client_addr",
         "inet_client_port", "pg_postmaster_start_time", "pg_is_in_recovery", "has_table_privilege",
         "has_column_privilege", "has_schema_privilege", "has_database_privilege", "pg_has_role",
         "pg_table_is_visible", "format_type", "pg_get_userbyid", "obj_description", "col_description",
         "pg_size_pretty", "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_database_size",
         "pg_encoding_to_char", "pg_client_encoding", "setseed", "pg_cancel_backend", "pg_try_advisory_lock",
         "pg_advisory_lock", "pg_advisory_unlock", "pg_advisory_xact_lock", "nextval", "currval", "lastval",
         "setval", "pg_notify", "pg_get_indexdef", "pg_get_constraintdef", "pg_get_expr", "pg_get_viewdef",
         "pg_get_functiondef", "pg_get_function_arguments", "pg_get_function_result",
         "pg_get_function_identity_arguments", "pg_get_triggerdef", "pg_get_serial_sequence", "to_regclass",
         "to_regtype", "to_regproc", "array_to_set"});
    return m;
  }();
  return *t;
}

}  // namespace

FunctionClass classifyFunction(std::string_view schema, std::string_view name) {
  // A function in any schema other than pg_catalog may shadow a built-in name: unknown.
  if (!schema.empty() && schema != "pg_catalog") return FunctionClass::Unknown;
  auto it = table().find(name);
  if (it != table().end()) return it->second;
  // Families recognised by prefix, so that new versions' variants are caught too.
  if (name.starts_with("dblink") || name.starts_with("lo_") || name.starts_with("pg_read_") ||
      name.starts_with("pg_ls_") || name.starts_with("pg_file_")) {
    return FunctionClass::FileOrNetwork;
  }
  if (name.starts_with("pg_stat_get_")) return FunctionClass::ValueCatalog;
  if (name.ends_with("_to_xml") || name.ends_with("_to_xmlschema") || name.ends_with("_to_xml_and_xmlschema")) {
    return FunctionClass::DynamicSql;
  }
  return FunctionClass::Unknown;
}

}  // namespace pgveil::masking
