//! Static checks of `kibana/*.ndjson` and `config/elasticsearch/` against each other and against
//! `docs/result-schema.md`: no Kibana or Elasticsearch runs here, so everything an import or an
//! index request would reject (or silently show empty) is caught by reading the files.

#[path = "static/files.rs"]
mod files;

use std::collections::{BTreeMap, BTreeSet};

use files::*;
use serde_json::Value;

/// Saved-object types we write, with the highest `typeMigrationVersion` we may declare for
/// each: the versions Kibana 8.9 (our floor) already knows, so every 8.x from 8.9 migrates the
/// objects forward instead of rejecting them as "from a more recent version of Kibana".
const TYPE_VERSIONS: &[(&str, &str)] = &[
    ("index-pattern", "8.0.0"),
    ("search", "8.0.0"),
    ("lens", "8.9.0"),
    ("dashboard", "8.9.0"),
];
const CORE_MIGRATION_VERSION: &str = "8.8.0";
const KIBANA_FLOOR: &str = "8.9.0";

/// Dashboard attributes Kibana's dashboard schema accepts (unknown keys are forbidden there).
const DASHBOARD_ATTRIBUTES: &[&str] = &[
    "title",
    "description",
    "kibanaSavedObjectMeta",
    "timeRestore",
    "timeFrom",
    "timeTo",
    "refreshInterval",
    "controlGroupInput",
    "panelsJSON",
    "optionsJSON",
    "hits",
    "version",
];

const NUMERIC: &[&str] = &[
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
];

fn objects() -> Vec<SavedObject> {
    saved_objects()
}

fn by_key(objects: &[SavedObject]) -> BTreeMap<(String, String), &SavedObject> {
    objects
        .iter()
        .map(|o| ((o.type_().to_owned(), o.id().to_owned()), o))
        .collect()
}

/// Data view id → the mapped fields of the index template its title designates.
fn data_view_fields(objects: &[SavedObject]) -> BTreeMap<String, BTreeMap<String, Mapped>> {
    let templates = index_templates();
    let mut out = BTreeMap::new();
    for dv in objects.iter().filter(|o| o.type_() == "index-pattern") {
        let title = dv.attributes()["title"].as_str().unwrap_or("");
        let mut fields = BTreeMap::new();
        for pattern in title.split(',') {
            let (_, _, f) = templates
                .iter()
                .find(|(_, patterns, _)| patterns.iter().any(|p| p == pattern.trim()))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: title pattern {pattern:?} is not the index_patterns of any index template in config/elasticsearch/index_templates",
                        dv.at()
                    )
                });
            fields.extend(f.clone());
        }
        out.insert(dv.id().to_owned(), fields);
    }
    out
}

/// Every Lens layer: (lens object, layer id, layer state, data view id it is bound to).
fn lens_layers(objects: &[SavedObject]) -> Vec<(&SavedObject, String, &Value, String)> {
    let mut out = Vec::new();
    for lens in objects.iter().filter(|o| o.type_() == "lens") {
        let layers = lens.attributes()["state"]["datasourceStates"]["formBased"]["layers"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no formBased layers", lens.at()));
        for (layer_id, layer) in layers {
            let name = format!("indexpattern-datasource-layer-{layer_id}");
            let (ty, id) = lens.reference(&name).unwrap_or_else(|| {
                panic!(
                    "{}: layer {layer_id} has no reference named {name}",
                    lens.at()
                )
            });
            assert_eq!(
                ty,
                "index-pattern",
                "{}: {name} must point to a data view",
                lens.at()
            );
            out.push((lens, layer_id.clone(), layer, id.to_owned()));
        }
    }
    out
}

fn check_field(
    fields: &BTreeMap<String, Mapped>,
    field: &str,
    at: &str,
    errors: &mut Vec<String>,
) -> Option<Mapped> {
    match fields.get(field) {
        Some(m) => Some(m.clone()),
        None => {
            errors.push(format!(
                "{at}: field {field:?} is not mapped by the index template"
            ));
            None
        }
    }
}

fn check_kql(fields: &BTreeMap<String, Mapped>, query: &str, at: &str, errors: &mut Vec<String>) {
    let closed: BTreeMap<String, Vec<String>> = result_schema()
        .into_iter()
        .filter(|r| !r.closed_values.is_empty())
        .map(|r| (r.field, r.closed_values))
        .collect();
    for clause in kql_clauses(query) {
        check_field(
            fields,
            &clause.field,
            &format!("{at} (query {query:?})"),
            errors,
        );
        if let Some(allowed) = closed.get(&clause.field) {
            for v in &clause.values {
                if !allowed.contains(v) {
                    errors.push(format!(
                        "{at}: query compares {} with {v:?}, which the prober never writes (docs/result-schema.md lists {allowed:?})",
                        clause.field
                    ));
                }
            }
        }
    }
}

fn assert_no_errors(errors: Vec<String>) {
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn every_ndjson_line_is_one_compact_saved_object() {
    let mut errors = Vec::new();
    for file in kibana_file_names() {
        let text = read(std::path::Path::new("kibana").join(&file));
        for (i, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("kibana/{file}:{}", i + 1);
            if line != line.trim() || line.contains('\r') {
                errors.push(format!("{at}: leading/trailing whitespace or CR"));
            }
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                errors.push(format!(
                    "{at}: not one JSON object on its own line (pretty-printed?)"
                ));
                continue;
            };
            if v.get("exportedCount").is_some() {
                errors.push(format!("{at}: export summary line; leave it out"));
                continue;
            }
            for (key, ok) in [
                ("type", v.get("type").is_some_and(Value::is_string)),
                ("id", v.get("id").is_some_and(Value::is_string)),
                (
                    "attributes",
                    v.get("attributes").is_some_and(Value::is_object),
                ),
                (
                    "references",
                    v.get("references").is_some_and(Value::is_array),
                ),
            ] {
                if !ok {
                    errors.push(format!("{at}: `{key}` missing or of the wrong JSON type"));
                }
            }
            for r in v["references"].as_array().into_iter().flatten() {
                if !["id", "name", "type"]
                    .iter()
                    .all(|k| r.get(*k).is_some_and(Value::is_string))
                {
                    errors.push(format!("{at}: reference {r} lacks string id/name/type"));
                }
            }
        }
    }
    let objects = objects();
    let mut seen = BTreeSet::new();
    for o in &objects {
        if !seen.insert((o.type_().to_owned(), o.id().to_owned())) {
            errors.push(format!("{}: duplicate {} id {}", o.at(), o.type_(), o.id()));
        }
    }
    assert!(!objects.is_empty(), "no saved objects under kibana/");
    assert_no_errors(errors);
}

#[test]
fn declared_versions_are_known_to_every_kibana_from_the_floor_to_the_pinned_one() {
    let objects = objects();
    let pinned = pinned_kibana_version(&objects);
    assert!(
        version(&pinned) >= version(KIBANA_FLOOR),
        "pinned Kibana {pinned} is below {KIBANA_FLOOR}, which the Lens formBased shape needs"
    );
    let mut errors = Vec::new();
    for o in &objects {
        let at = o.at();
        let Some((_, max)) = TYPE_VERSIONS.iter().find(|(t, _)| *t == o.type_()) else {
            errors.push(format!(
                "{at}: type {} is not one we know how to write",
                o.type_()
            ));
            continue;
        };
        if o.value.get("migrationVersion").is_some() {
            errors.push(format!(
                "{at}: legacy migrationVersion; declare typeMigrationVersion instead"
            ));
        }
        match o.value["typeMigrationVersion"].as_str() {
            None => errors.push(format!(
                "{at}: no typeMigrationVersion: Kibana would run every migration from 7.x on a shape written for {max}"
            )),
            Some(v) => {
                if version(v) > version(max) || version(v) > version(&pinned) {
                    errors.push(format!(
                        "{at}: typeMigrationVersion {v} is above {max} (or the pinned Kibana {pinned})"
                    ));
                }
                if o.type_() == "lens" && v != *max {
                    errors.push(format!(
                        "{at}: formBased Lens state must declare {max} (older versions re-run the indexpattern→formBased migration)"
                    ));
                }
            }
        }
        match o.value["coreMigrationVersion"].as_str() {
            Some(v) if version(v) <= version(CORE_MIGRATION_VERSION) => {}
            other => errors.push(format!(
                "{at}: coreMigrationVersion {other:?} must be at most {CORE_MIGRATION_VERSION}"
            )),
        }
    }
    assert_no_errors(errors);
}

#[test]
fn every_reference_resolves_to_an_object_imported_no_later() {
    let objects = objects();
    let order: Vec<&str> = iaso_probe::setup::kibana_files()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let rank = |file: &str| order.iter().position(|f| *f == file).unwrap();
    let keys = by_key(&objects);
    let mut errors = Vec::new();
    for o in &objects {
        for (name, ty, id) in o.references() {
            match keys.get(&(ty.to_owned(), id.to_owned())) {
                None => errors.push(format!(
                    "{}: reference {name} → {ty}/{id} is not an object in kibana/",
                    o.at()
                )),
                Some(target) if rank(&target.file) > rank(&o.file) => errors.push(format!(
                    "{}: reference {name} → {ty}/{id} lives in {}, imported after {}",
                    o.at(),
                    target.file,
                    o.file
                )),
                Some(_) => {}
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn every_lens_layer_is_bound_to_a_data_view_and_its_columns_are_consistent() {
    let objects = objects();
    let mut errors = Vec::new();
    let layers = lens_layers(&objects);
    for lens in objects.iter().filter(|o| o.type_() == "lens") {
        let at = lens.at();
        let state = &lens.attributes()["state"];
        let sources = state["datasourceStates"].as_object().unwrap();
        for (name, source) in sources {
            let has_layers = source["layers"].as_object().is_some_and(|l| !l.is_empty());
            if name != "formBased" && has_layers {
                errors.push(format!("{at}: layers under datasourceStates.{name}; only formBased is written for 8.9+"));
            }
        }
        // Layer ids the visualization uses, and the columns it shows.
        let vis = &state["visualization"];
        let mut used: Vec<(String, String)> = Vec::new(); // (layer, column)
        let vis_layers: Vec<&Value> = match vis.get("layers") {
            Some(Value::Array(l)) => l.iter().collect(),
            _ => vec![vis],
        };
        for vl in vis_layers {
            let layer = vl["layerId"].as_str().unwrap_or("").to_owned();
            let mut columns: Vec<&str> = Vec::new();
            for key in [
                "xAccessor",
                "splitAccessor",
                "metricAccessor",
                "secondaryMetricAccessor",
                "maxAccessor",
                "breakdownByAccessor",
                "yAccessor",
                "valueAccessor",
            ] {
                columns.extend(vl.get(key).and_then(Value::as_str));
            }
            for key in ["accessors", "primaryGroups", "metrics"] {
                columns.extend(
                    vl[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
            }
            columns.extend(
                vl["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["columnId"].as_str()),
            );
            columns.extend(vl.pointer("/sorting/columnId").and_then(Value::as_str));
            columns.extend(
                vl["yConfig"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["forAccessor"].as_str()),
            );
            if columns.is_empty() {
                errors.push(format!(
                    "{at}: visualization layer {layer:?} shows no column"
                ));
            }
            used.extend(columns.into_iter().map(|c| (layer.clone(), c.to_owned())));
        }
        let own: Vec<_> = layers
            .iter()
            .filter(|(l, ..)| l.id() == lens.id())
            .collect();
        for (layer, column) in &used {
            match own.iter().find(|(_, id, ..)| id == layer) {
                None => errors.push(format!(
                    "{at}: visualization uses layer {layer:?}, absent from formBased layers"
                )),
                Some((_, _, state, _)) => {
                    if state["columns"].get(column).is_none() {
                        errors.push(format!(
                            "{at}: visualization uses column {column:?}, absent from layer {layer}"
                        ));
                    }
                }
            }
        }
        for (_, layer_id, layer, _) in &own {
            let columns = layer["columns"].as_object().unwrap();
            let order: BTreeSet<&str> = layer["columnOrder"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let keys: BTreeSet<&str> = columns.keys().map(String::as_str).collect();
            if order != keys {
                errors.push(format!("{at}: layer {layer_id} columnOrder {order:?} differs from its columns {keys:?}"));
            }
            for (id, column) in columns {
                for r in column["references"].as_array().into_iter().flatten() {
                    if !matches!(r.as_str(), Some(r) if columns.contains_key(r)) {
                        errors.push(format!("{at}: column {id} references missing column {r}"));
                    }
                }
                if let Some(by) = column
                    .pointer("/params/orderBy/columnId")
                    .and_then(Value::as_str)
                {
                    if !columns.contains_key(by) {
                        errors.push(format!(
                            "{at}: column {id} is ordered by missing column {by}"
                        ));
                    }
                }
            }
        }
    }
    assert_no_errors(errors);
}

/// Which mapping types each Lens operation can aggregate, and the `dataType` Lens expects.
fn operation_accepts(op: &str, es_type: &str) -> bool {
    let numeric = NUMERIC.contains(&es_type);
    match op {
        "date_histogram" => matches!(es_type, "date" | "date_nanos"),
        "range" | "average" | "sum" | "median" | "percentile" | "percentile_rank"
        | "standard_deviation" | "min" | "max" => numeric,
        "terms" | "unique_count" | "count" | "last_value" => {
            numeric
                || matches!(
                    es_type,
                    "keyword" | "constant_keyword" | "wildcard" | "date" | "boolean" | "ip"
                )
        }
        _ => false,
    }
}

fn data_type_of(es_type: &str) -> &'static str {
    if NUMERIC.contains(&es_type) {
        "number"
    } else if matches!(es_type, "date" | "date_nanos") {
        "date"
    } else {
        "string"
    }
}

/// Runs `check` over the saved objects and the mapped fields of each data view (by id),
/// then reports every error it collected at once.
fn check_mapped(
    check: impl FnOnce(&[SavedObject], &BTreeMap<String, BTreeMap<String, Mapped>>, &mut Vec<String>),
) {
    let objects = objects();
    let fields_of = data_view_fields(&objects);
    let mut errors = Vec::new();
    check(&objects, &fields_of, &mut errors);
    assert_no_errors(errors);
}

/// Lens layers: query, column filters, source and sort fields (aggregatable by the column's
/// operation, with the matching dataType), and a data view that exists.
#[test]
fn every_field_a_lens_layer_uses_is_mapped_with_a_fitting_type() {
    check_mapped(|objects, fields_of, errors| {
        let no_fields = BTreeMap::new();
        for (lens, layer_id, layer, dv) in lens_layers(objects) {
            let fields = fields_of.get(&dv).unwrap_or(&no_fields);
            let at = format!("{} layer {layer_id}", lens.at());
            check_kql(
                fields,
                lens.attributes()["state"]["query"]["query"]
                    .as_str()
                    .unwrap_or(""),
                &at,
                errors,
            );
            for (id, column) in layer["columns"].as_object().unwrap() {
                let at = format!("{at} column {id}");
                let op = column["operationType"].as_str().unwrap_or("");
                if let Some(q) = column.pointer("/filter/query").and_then(Value::as_str) {
                    check_kql(fields, q, &at, errors);
                }
                for key in ["sourceField", "params/sortField"] {
                    let Some(field) = column.pointer(&format!("/{key}")).and_then(Value::as_str)
                    else {
                        continue;
                    };
                    if field == "___records___" && op == "count" {
                        continue;
                    }
                    let Some(m) = check_field(fields, field, &at, errors) else {
                        continue;
                    };
                    if key == "sourceField" {
                        if !operation_accepts(op, &m.es_type) {
                            errors.push(format!(
                                "{at}: {op} cannot aggregate {field} ({})",
                                m.es_type
                            ));
                        }
                        let expected = if matches!(op, "count" | "unique_count") {
                            "number"
                        } else {
                            data_type_of(&m.es_type)
                        };
                        if column["dataType"].as_str() != Some(expected) {
                            errors.push(format!(
                                "{at}: dataType {} but {field} is {} ({expected})",
                                column["dataType"], m.es_type
                            ));
                        }
                    }
                }
            }
            if !fields_of.contains_key(&dv) {
                errors.push(format!("{at}: bound to data view {dv}, not in kibana/"));
            }
        }
    });
}

/// Data views: `@timestamp` as their time field, field formats on mapped fields only.
#[test]
fn every_data_view_is_timed_by_timestamp_and_formats_mapped_fields() {
    check_mapped(|objects, fields_of, errors| {
        for dv in objects.iter().filter(|o| o.type_() == "index-pattern") {
            let fields = &fields_of[dv.id()];
            let attrs = dv.attributes();
            match attrs["timeFieldName"].as_str() {
                Some("@timestamp") => {}
                other => errors.push(format!(
                    "{}: timeFieldName {other:?}, expected @timestamp",
                    dv.at()
                )),
            }
            if let Some(formats) = attrs.get("fieldFormatMap") {
                for field in decode(formats, "fieldFormatMap")
                    .as_object()
                    .unwrap()
                    .keys()
                {
                    check_field(
                        fields,
                        field,
                        &format!("{} fieldFormatMap", dv.at()),
                        errors,
                    );
                }
            }
        }
    });
}

/// Saved searches: their data view reference, query, columns and sort fields.
#[test]
fn every_field_a_saved_search_uses_is_mapped() {
    check_mapped(|objects, fields_of, errors| {
        let no_fields = BTreeMap::new();
        for search in objects.iter().filter(|o| o.type_() == "search") {
            let at = search.at();
            let source = decode(
                &search.attributes()["kibanaSavedObjectMeta"]["searchSourceJSON"],
                "searchSourceJSON",
            );
            let index_ref = source["indexRefName"].as_str().unwrap_or("");
            let Some((_, dv)) = search.reference(index_ref) else {
                errors.push(format!(
                    "{at}: indexRefName {index_ref:?} has no matching reference"
                ));
                continue;
            };
            let fields = fields_of.get(dv).unwrap_or(&no_fields);
            check_kql(
                fields,
                source["query"]["query"].as_str().unwrap_or(""),
                &at,
                errors,
            );
            for col in search.attributes()["columns"]
                .as_array()
                .into_iter()
                .flatten()
            {
                check_field(
                    fields,
                    col.as_str().unwrap_or(""),
                    &format!("{at} columns"),
                    errors,
                );
            }
            for sort in search.attributes()["sort"].as_array().into_iter().flatten() {
                check_field(
                    fields,
                    sort[0].as_str().unwrap_or(""),
                    &format!("{at} sort"),
                    errors,
                );
            }
        }
    });
}

/// Dashboard controls: an options list on a mapped keyword of a referenced data view.
#[test]
fn every_dashboard_control_is_an_options_list_on_a_mapped_keyword() {
    check_mapped(|objects, fields_of, errors| {
        let no_fields = BTreeMap::new();
        for dash in objects.iter().filter(|o| o.type_() == "dashboard") {
            for (control_id, control) in controls(dash) {
                let at = format!("{} control {control_id}", dash.at());
                let name = format!("controlGroup_{control_id}:optionsListDataView");
                let Some((_, dv)) = dash.reference(&name) else {
                    errors.push(format!("{at}: no reference named {name}"));
                    continue;
                };
                let fields = fields_of.get(dv).unwrap_or(&no_fields);
                let field = control["explicitInput"]["fieldName"].as_str().unwrap_or("");
                if let Some(m) = check_field(fields, field, &at, errors) {
                    if m.es_type != "keyword" {
                        errors.push(format!(
                            "{at}: options list on {field} ({}) needs a keyword",
                            m.es_type
                        ));
                    }
                }
            }
        }
    });
}

fn controls(dash: &SavedObject) -> Vec<(String, Value)> {
    let Some(input) = dash.attributes().get("controlGroupInput") else {
        return Vec::new();
    };
    decode(&input["panelsJSON"], "controlGroupInput.panelsJSON")
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn data_view_titles_are_index_template_patterns_of_data_streams() {
    let objects = objects();
    let templates = es_resources("index_templates");
    let mut errors = Vec::new();
    for dv in objects.iter().filter(|o| o.type_() == "index-pattern") {
        let title = dv.attributes()["title"].as_str().unwrap_or("");
        for pattern in title.split(',').map(str::trim) {
            let owner = templates.iter().find(|(_, t)| {
                t["index_patterns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p == pattern)
            });
            match owner {
                None => errors.push(format!(
                    "{}: title pattern {pattern:?} is no index template's pattern",
                    dv.at()
                )),
                Some((name, t)) if t.get("data_stream").is_none() => errors.push(format!(
                    "{}: index template {name} is not a data stream template",
                    dv.at()
                )),
                Some(_) => {}
            }
        }
    }
    // And each data stream the prober writes (<type>-<dataset>-<namespace>) is seen, and the
    // legacy ones (iaso-checks-<env>, iaso-jobs-<env>) stay readable.
    for stream in [
        "synthetics-iaso.checks-prod",
        "logs-iaso.jobs-lab",
        "iaso-checks-prod",
        "iaso-jobs-lab",
    ] {
        let seen = objects
            .iter()
            .filter(|o| o.type_() == "index-pattern")
            .any(|dv| {
                dv.attributes()["title"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .any(|p| glob_match(p.trim(), stream))
            });
        if !seen {
            errors.push(format!("no data view covers the data stream {stream}"));
        }
    }
    assert_no_errors(errors);
}

#[test]
fn templates_map_exactly_the_fields_of_the_result_schema_with_their_types() {
    let schema = result_schema();
    let mut errors = Vec::new();
    for (name, template) in es_resources("index_templates") {
        let (fields, roots) = index_template_fields(&template);
        let strict = roots
            .iter()
            .any(|m| m.get("dynamic") == Some(&Value::from("strict")));
        if !strict {
            errors.push(format!(
                "index template {name}: mappings are not \"dynamic\": \"strict\""
            ));
        }
        for row in &schema {
            match fields.get(&row.field) {
                None => errors.push(format!(
                    "index template {name}: {} (docs/result-schema.md) is not mapped",
                    row.field
                )),
                Some(m) if m.es_type != row.es_type => errors.push(format!(
                    "index template {name}: {} is mapped as {}, docs/result-schema.md says {}",
                    row.field, m.es_type, row.es_type
                )),
                Some(_) => {}
            }
            for (sub, ty) in &row.multi_fields {
                let path = format!("{}.{sub}", row.field);
                match fields.get(&path) {
                    Some(m) if m.multi_field && &m.es_type == ty => {}
                    other => errors.push(format!(
                        "index template {name}: multi-field {path} should be {ty}, found {:?}",
                        other.map(|m| &m.es_type)
                    )),
                }
            }
        }
        let documented: BTreeSet<&str> = schema.iter().map(|r| r.field.as_str()).collect();
        for (field, m) in &fields {
            if !m.multi_field && !documented.contains(field.as_str()) {
                errors.push(format!(
                    "index template {name}: {field} is mapped but not in docs/result-schema.md"
                ));
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn dashboards_are_well_formed() {
    let objects = objects();
    let pinned = pinned_kibana_version(&objects);
    let mut errors = Vec::new();
    for dash in objects.iter().filter(|o| o.type_() == "dashboard") {
        let at = dash.at();
        let attrs = dash.attributes().as_object().unwrap();
        for key in attrs.keys() {
            if !DASHBOARD_ATTRIBUTES.contains(&key.as_str()) {
                errors.push(format!(
                    "{at}: attribute {key} is not in Kibana's dashboard schema"
                ));
            }
        }
        decode(&attrs["optionsJSON"], "optionsJSON");
        decode(
            &attrs["kibanaSavedObjectMeta"]["searchSourceJSON"],
            "searchSourceJSON",
        );
        let panels = decode(&attrs["panelsJSON"], "panelsJSON");
        let panels = panels.as_array().unwrap();
        let mut indexes = BTreeSet::new();
        let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for panel in panels {
            let index = panel["panelIndex"].as_str().unwrap_or("").to_owned();
            let p_at = format!("{at} panel {index}");
            if !indexes.insert(index.clone()) {
                errors.push(format!("{p_at}: duplicate panelIndex"));
            }
            let grid = &panel["gridData"];
            let n = |k: &str| grid[k].as_u64().unwrap_or(0);
            if grid["i"].as_str() != Some(&index) {
                errors.push(format!("{p_at}: gridData.i differs from panelIndex"));
            }
            if n("w") == 0 || n("h") == 0 || n("x") + n("w") > 48 {
                errors.push(format!(
                    "{p_at}: gridData {grid} outside the 48-column grid"
                ));
            }
            let mut overlapped = BTreeSet::new();
            for x in n("x")..n("x") + n("w") {
                for y in n("y")..n("y") + n("h") {
                    if let Some(other) = cells.insert((x, y), index.clone()) {
                        overlapped.insert(other);
                    }
                }
            }
            for other in overlapped {
                errors.push(format!("{p_at}: overlaps panel {other}"));
            }
            if panel["version"].as_str() != Some(&pinned) {
                errors.push(format!(
                    "{p_at}: version {} differs from {pinned}",
                    panel["version"]
                ));
            }
            let ref_name = panel["panelRefName"].as_str().unwrap_or("");
            let full = format!("{index}:{ref_name}");
            match dash.reference(&full) {
                None => errors.push(format!(
                    "{p_at}: panelRefName {ref_name:?} has no reference named {full:?}"
                )),
                Some((ty, _)) if Some(ty) != panel["type"].as_str() => errors.push(format!(
                    "{p_at}: panel type {} but reference type {ty}",
                    panel["type"]
                )),
                Some(_) => {}
            }
        }
        if panels.is_empty() {
            errors.push(format!("{at}: no panels"));
        }
    }
    assert_no_errors(errors);
}

/// The fields a dashboard's panels read and the values their queries select.
fn fields_and_values_read(
    dash: &SavedObject,
    keys: &BTreeMap<(String, String), &SavedObject>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut used_fields = BTreeSet::new();
    let mut used_values = BTreeSet::new();
    let mut add_query = |q: &str, f: &mut BTreeSet<String>| {
        for c in kql_clauses(q) {
            f.insert(c.field);
            used_values.extend(c.values);
        }
    };
    for (name, ty, id) in dash.references() {
        let Some(o) = keys.get(&(ty.to_owned(), id.to_owned())) else {
            continue;
        };
        if name.starts_with("controlGroup_") {
            continue;
        }
        match ty {
            "lens" => {
                let state = &o.attributes()["state"];
                add_query(
                    state["query"]["query"].as_str().unwrap_or(""),
                    &mut used_fields,
                );
                for layer in state["datasourceStates"]["formBased"]["layers"]
                    .as_object()
                    .unwrap()
                    .values()
                {
                    for column in layer["columns"].as_object().unwrap().values() {
                        used_fields.extend(column["sourceField"].as_str().map(str::to_owned));
                        if let Some(q) = column.pointer("/filter/query").and_then(Value::as_str) {
                            add_query(q, &mut used_fields);
                        }
                    }
                }
            }
            "search" => {
                let a = o.attributes();
                used_fields.extend(
                    a["columns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_owned)),
                );
                let source = decode(
                    &a["kibanaSavedObjectMeta"]["searchSourceJSON"],
                    "searchSourceJSON",
                );
                add_query(
                    source["query"]["query"].as_str().unwrap_or(""),
                    &mut used_fields,
                );
            }
            _ => {}
        }
    }
    (used_fields, used_values)
}

/// The dashboard titled `title` reads every one of `wanted_fields`, its queries select every
/// one of `wanted_values` (the panels ops asked for: guards against a panel silently
/// disappearing), and it has an options-list control on `service.environment`.
fn dashboard_shows(title: &str, wanted_fields: &[&str], wanted_values: &[&str]) {
    let objects = objects();
    let keys = by_key(&objects);
    let dash = objects
        .iter()
        .find(|o| o.type_() == "dashboard" && o.attributes()["title"] == *title)
        .unwrap_or_else(|| panic!("no dashboard titled {title:?}"));
    let (used_fields, used_values) = fields_and_values_read(dash, &keys);
    let missing: Vec<_> = wanted_fields
        .iter()
        .filter(|f| !used_fields.contains(**f))
        .collect();
    assert!(missing.is_empty(), "{title}: no panel reads {missing:?}");
    let missing: Vec<_> = wanted_values
        .iter()
        .filter(|v| !used_values.contains(**v))
        .collect();
    assert!(
        missing.is_empty(),
        "{title}: no panel query selects {missing:?}"
    );
    let env_control = controls(dash).iter().any(|(_, c)| {
        c["type"] == "optionsListControl"
            && c["explicitInput"]["fieldName"] == "service.environment"
    });
    assert!(
        env_control,
        "{title}: no options-list control on service.environment"
    );
}

#[test]
fn the_availability_dashboard_shows_what_ops_asked_for() {
    dashboard_shows(
        "IASO — service availability",
        &[
            "summary.up",
            "summary.final_attempt",
            "monitor.check_group",
            "monitor.id",
            "state.status",
            "state.started_at",
            "state.checks",
            "event.duration",
            "iaso.limit_ms",
            "iaso.health.component",
            "iaso.health.status",
            "error.type",
            "error.message",
            "service.environment",
            "event.action",
            "@timestamp",
        ],
        &["auth", "response_time", "health", "failure", "down"],
    );
}

#[test]
fn the_jobs_dashboard_shows_what_ops_asked_for() {
    dashboard_shows(
        "IASO — backup & restore jobs",
        &[
            "iaso.job.result",
            "event.duration",
            "host.name",
            "iaso.job.failure_reason",
            "iaso.job.status",
            "iaso.job.id",
            "trace.id",
            "labels.run_id",
            "error.type",
            "error.message.keyword",
            "service.environment",
            "@timestamp",
        ],
        &[
            "backup.launch",
            "restore.launch",
            "job.end",
            "success",
            "failure",
            "timeout",
        ],
    );
}

#[test]
fn a_dashboard_has_a_host_control() {
    let objects = objects();
    let host_control = objects
        .iter()
        .filter(|o| o.type_() == "dashboard")
        .flat_map(controls)
        .any(|(_, c)| c["explicitInput"]["fieldName"] == "host.name");
    assert!(host_control, "no dashboard has a host control");
}

fn lens_by_id<'a>(objects: &'a [SavedObject], id: &str) -> &'a SavedObject {
    objects
        .iter()
        .find(|o| o.type_() == "lens" && o.id() == id)
        .unwrap_or_else(|| panic!("no lens {id}"))
}

fn layer_columns(lens: &SavedObject) -> Vec<Value> {
    let layers = lens.attributes()["state"]["datasourceStates"]["formBased"]["layers"]
        .as_object()
        .unwrap();
    let layer = layers.values().next().unwrap();
    layer["columnOrder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| layer["columns"][id.as_str().unwrap()].clone())
        .collect()
}

/// The bugs of the first dashboards, each pinned: availability averaged over documents (a
/// health pass weighing 6 times a liveness check), the latest status grouped on job ids the
/// portal reuses in every environment and run.
#[test]
fn availability_is_per_monitor_and_per_check_run_and_jobs_group_on_their_flow() {
    let objects = objects();
    let per_monitor = layer_columns(lens_by_id(&objects, "iaso-availability-by-monitor"));
    assert_eq!(per_monitor[0]["sourceField"], "monitor.id");
    assert_eq!(per_monitor[0]["operationType"], "terms");
    assert!(per_monitor
        .iter()
        .any(|c| c["operationType"] == "average" && c["sourceField"] == "summary.up"));
    for id in ["iaso-availability-overall", "iaso-availability-by-check"] {
        let cols = layer_columns(lens_by_id(&objects, id));
        let formula = cols
            .iter()
            .find(|c| c["operationType"] == "formula")
            .unwrap_or_else(|| panic!("{id}: no formula"));
        let text = formula["params"]["formula"].as_str().unwrap();
        assert!(
            text.contains("unique_count(monitor.check_group"),
            "{id}: availability is counted per check run: {text}"
        );
        assert!(
            !cols
                .iter()
                .any(|c| c["operationType"] == "average" && c["sourceField"] == "summary.up"),
            "{id}: no average over documents"
        );
    }
    let latest = layer_columns(lens_by_id(&objects, "iaso-jobs-latest-status"));
    assert_eq!(
        (
            latest[0]["operationType"].as_str(),
            latest[0]["sourceField"].as_str()
        ),
        (Some("terms"), Some("trace.id")),
        "one row per job flow, not per (reused) job id"
    );
    let status = layer_columns(lens_by_id(&objects, "iaso-current-status"));
    assert!(status
        .iter()
        .any(|c| c["sourceField"] == "state.started_at" && c["dataType"] == "date"));
    let heat = lens_by_id(&objects, "iaso-status-heatmap");
    assert_eq!(heat.attributes()["visualizationType"], "lnsHeatmap");
}

/// `setup` imports a file again only when the version in its dashboard's description differs
/// from Kibana's copy: the marker must be the hash of the file (with the marker blanked), so
/// any change to a file changes it.
#[test]
fn each_dashboard_carries_the_version_of_its_file() {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kibana");
    for (name, content) in iaso_probe::setup::kibana_files() {
        let text = std::str::from_utf8(content).unwrap();
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), content);
        let versions = iaso_probe::setup::kibana::file_versions(content);
        if !text.contains("\"type\":\"dashboard\"") {
            assert!(versions.is_empty(), "{name}");
            continue;
        }
        assert_eq!(versions.len(), 1, "{name}: one version marker");
        let (_, version) = &versions[0];
        let blanked = text.replace(
            &format!("[iaso-probe dashboards {version}]"),
            "[iaso-probe dashboards <version>]",
        );
        let hash = hex::encode(Sha256::digest(blanked.as_bytes()));
        assert_eq!(
            version,
            &hash[..12],
            "{name}: rerun python3 tools/kibana_objects.py"
        );
    }
}

/// Every field a rule's query reads is mapped, with a type its query can use, by the template
/// of the streams it reads; the down rule counts consecutive downs through `state.checks`.
#[test]
fn every_alert_rule_reads_mapped_fields() {
    let templates = index_templates();
    let rules = iaso_probe::setup::alert_rules(&iaso_probe::config::AlertsConfig::default());
    assert_eq!(rules.len(), 2);
    let mut errors = Vec::new();
    for rule in &rules {
        let params = &rule.create["params"];
        let index = match params["index"].as_array() {
            Some(i) => i[0].as_str().unwrap().to_owned(),
            None => {
                let esql = params["esqlQuery"]["esql"].as_str().unwrap();
                esql.split_whitespace().nth(1).unwrap().to_owned()
            }
        };
        let Some((_, _, fields)) = templates
            .iter()
            .find(|(_, patterns, _)| patterns.iter().any(|p| p == &index))
        else {
            errors.push(format!(
                "rule {}: no index template has the pattern {index}",
                rule.id
            ));
            continue;
        };
        let used = rule.query_fields();
        assert!(used.len() >= 3, "rule {}: fields read: {used:?}", rule.id);
        for f in &used {
            match fields.get(f) {
                None => errors.push(format!("rule {}: {f} is not mapped in {index}", rule.id)),
                Some(m) if f == "@timestamp" && m.es_type != "date" => {
                    errors.push(format!("rule {}: @timestamp is {}", rule.id, m.es_type))
                }
                Some(m) if m.es_type == "match_only_text" => errors.push(format!(
                    "rule {}: {f} is match_only_text, not usable in a term or STATS BY",
                    rule.id
                )),
                Some(_) => {}
            }
        }
        assert_eq!(rule.create["rule_type_id"], ".es-query");
        assert_eq!(
            rule.create["actions"],
            serde_json::json!([]),
            "connector left to the operator"
        );
        assert!(
            rule.update().get("rule_type_id").is_none(),
            "PUT cannot change the type"
        );
    }
    let down = &rules[0];
    assert!(down.query_fields().contains(&"state.checks".to_owned()));
    assert!(down.query_fields().contains(&"state.status".to_owned()));
    assert!(rules[1]
        .query_fields()
        .contains(&"event.outcome".to_owned()));
    assert!(rules[1]
        .query_fields()
        .contains(&"service.environment".to_owned()));
    assert_no_errors(errors);
}
