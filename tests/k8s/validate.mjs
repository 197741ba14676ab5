// Validates Kubernetes objects against the official API schemas, offline, refusing unknown fields.
//
//   node validate.mjs FILE... | -        (YAML or JSON; several documents, and `kind: List` items)
//
// Two npm packages generated from the Kubernetes OpenAPI specification (package.json):
// - kubernetes-models: a compiled validator per kind (types, required fields, enums, formats,
//   quantities, int-or-string). It accepts fields the schema does not know;
// - @kubernetes/client-node: a model class per type whose attribute map lists the type's fields.
//   Walking an object along those maps finds every field the schema does not have.
// Plus what the OpenAPI specification cannot say and the API server checks: an init container's
// restartPolicy may only be "Always" (a native sidecar).
//
// Prints one line per object, "ok   Kind name" or "FAIL Kind name" followed by one indented line
// per problem ("/spec/containers/0/imagePullPolicyy: unknown field"); exits 1 when any object
// fails, 2 on a usage or read error. Nothing is fetched at run time.

import * as fs from "node:fs";
import * as models from "@kubernetes/client-node/dist/gen/models/all.js";
import yaml from "js-yaml";

const pointer = (key) => String(key).replace(/~/g, "~0").replace(/\//g, "~1");
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// client-node's model class for apiVersion/kind: V1Pod, V1Deployment, AdmissionregistrationV1...
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const plain = capitalize(version) + kind;
  const grouped = group.split(".")[0].replace(/^./, (c) => c.toUpperCase()) + plain;
  for (const name of [plain, grouped]) {
    if (models[name] && typeof models[name].getAttributeTypeMap === "function") return name;
  }
  return null;
}

// Unknown fields of `value`, which should be of client-node type `type`, appended to `errors`.
function unknownFields(value, type, path, errors) {
  if (value === null || value === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, m[1], `${path}/${i}`, errors));
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);  // maps: labels, annotations, data, limits
  if (m) {
    if (isObject(value)) {
      for (const [k, v] of Object.entries(value)) unknownFields(v, m[1], `${path}/${pointer(k)}`, errors);
    }
    return;
  }
  const model = models[type];
  // Scalars, int-or-string, quantities and free-form fields are the schema validator's part.
  if (!model || typeof model.getAttributeTypeMap !== "function" || !isObject(value)) return;
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) {
      errors.push(`${path}/${pointer(k)}: unknown field "${k}"`);
    } else {
      unknownFields(v, fields.get(k), `${path}/${pointer(k)}`, errors);
    }
  }
  if (type === "V1PodSpec") {
    (value.initContainers ?? []).forEach((c, i) => {
      if (isObject(c) && c.restartPolicy !== undefined && c.restartPolicy !== "Always") {
        errors.push(`${path}/initContainers/${i}/restartPolicy: must be "Always" (a native ` +
                    `sidecar) or absent, got ${JSON.stringify(c.restartPolicy)}`);
      }
    });
  }
}

export async function validate(doc) {
  const errors = [];
  if (!isObject(doc)) return ["/: not an object"];
  const { apiVersion, kind } = doc;
  if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) ||
      typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return [`/: apiVersion ${JSON.stringify(apiVersion)} and kind ${JSON.stringify(kind)} name no API type`];
  }
  let Model;
  try {
    Model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
  } catch {
    return [`/: no schema for ${apiVersion} ${kind}`];
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }]) {
      const allowed = err.params?.allowedValues ? ` ${JSON.stringify(err.params.allowedValues)}` : "";
      errors.push(`${err.instancePath || "/"}: ${err.message}${allowed}`);
    }
  }
  const model = modelFor(apiVersion, kind);
  if (model) {
    unknownFields(doc, model, "", errors);
  } else {
    errors.push(`/: no field list for ${apiVersion} ${kind}`);
  }
  return errors;
}

async function main(args) {
  if (args.length === 0) {
    process.stderr.write("usage: node validate.mjs FILE... | -\n");
    return 2;
  }
  let failed = 0;
  for (const file of args) {
    let text;
    try {
      text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (e) {
      process.stderr.write(`validate: ${file}: ${e.message}\n`);
      return 2;
    }
    let docs;
    try {
      // CORE_SCHEMA: timestamps stay strings, as the API server reads them.
      docs = yaml.loadAll(text, null, { schema: yaml.CORE_SCHEMA }).filter((d) => d != null);
    } catch (e) {
      process.stderr.write(`validate: ${file}: ${e.message}\n`);
      return 2;
    }
    const objects = docs.flatMap((d) => (d.kind === "List" && Array.isArray(d.items) ? d.items : [d]));
    for (const obj of objects) {
      const errors = await validate(obj);
      const name = `${obj?.kind ?? "?"} ${obj?.metadata?.name ?? obj?.metadata?.generateName ?? ""}`;
      if (errors.length === 0) {
        process.stdout.write(`ok   ${name}\n`);
      } else {
        failed++;
        process.stdout.write(`FAIL ${name}\n${errors.map((e) => `     ${e}\n`).join("")}`);
      }
    }
  }
  return failed > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
