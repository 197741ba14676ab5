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
// The Gateway API's kinds (gateway.networking.k8s.io: HTTPRoute, GRPCRoute, ReferenceGrant, ...)
// come from @kubernetes-models/gateway-api, generated from the Gateway API's CRDs: a compiled
// validator per kind, which accepts unknown fields too, and TypeScript declarations whose classes
// list each type's fields; walking an object along those finds the fields the CRDs do not have.
// The CRDs' CEL rules are not in either package (meshlet's own validation transcribes them).
//
// Prints one line per object, "ok   Kind name" or "FAIL Kind name" followed by one indented line
// per problem ("/spec/containers/0/imagePullPolicyy: unknown field"); exits 1 when any object
// fails, 2 on a usage or read error. Nothing is fetched at run time.

import * as fs from "node:fs";
import * as nodePath from "node:path";
import { fileURLToPath } from "node:url";
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

// The Gateway API types' fields, read from @kubernetes-models/gateway-api's declarations: for a
// declaration file, Map(field -> type) of its class, each type {array, file} with `file` the
// declaration file of an object type (null for scalars and types not of the package).
const gatewayRoot = fileURLToPath(
  new URL("node_modules/@kubernetes-models/gateway-api/", import.meta.url));
const gatewayTypes = new Map();
function gatewayFields(file) {
  if (gatewayTypes.has(file)) return gatewayTypes.get(file);
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    gatewayTypes.set(file, null);
    return null;
  }
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)\.js";$/gm)) {
    if (m[2].startsWith(".")) imports.set(m[1], nodePath.resolve(nodePath.dirname(file), `${m[2]}.d.ts`));
  }
  for (const m of text.matchAll(/^import \{ (\w+) \} from "@kubernetes-models\/apimachinery\/apis\/meta\/v1\/ObjectMeta";$/gm)) {
    imports.set(m[1], "V1ObjectMeta");  // walked with client-node's model
  }
  const body = /^export declare class \w+ extends Model<[^>]+> implements [^{]+\{\n([\s\S]*?)^\}/m.exec(text);
  if (!body) {
    gatewayTypes.set(file, null);  // a scalar type (export type X = string) or an enum
    return null;
  }
  const fields = new Map();
  for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.+);$/gm)) {
    const array = /^Array<(\w+)>$/.exec(m[2]);
    const name = array ? array[1] : m[2];
    fields.set(m[1], { array: !!array, file: imports.get(name) ?? null });
  }
  gatewayTypes.set(file, fields);
  return fields;
}

function unknownGatewayFields(value, file, path, errors) {
  if (file === "V1ObjectMeta") return unknownFields(value, file, path, errors);
  const fields = file && gatewayFields(file);
  if (!fields || !isObject(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const field = fields.get(k);
    if (!field) {
      errors.push(`${path}/${pointer(k)}: unknown field "${k}"`);
    } else if (field.array) {
      if (Array.isArray(v)) v.forEach((e, i) => unknownGatewayFields(e, field.file, `${path}/${pointer(k)}/${i}`, errors));
    } else {
      unknownGatewayFields(v, field.file, `${path}/${pointer(k)}`, errors);
    }
  }
}

// What a kind's compiled validator finds wrong in `doc`, appended to `errors`.
function schemaErrors(Model, doc, errors) {
  try {
    new Model(doc).validate();
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }]) {
      const allowed = err.params?.allowedValues ? ` ${JSON.stringify(err.params.allowedValues)}` : "";
      errors.push(`${err.instancePath || "/"}: ${err.message}${allowed}`);
    }
  }
}

async function validateGateway(doc, apiVersion, kind) {
  const errors = [];
  const [group, version] = apiVersion.split("/");
  let Model;
  try {
    Model = (await import(`@kubernetes-models/gateway-api/${group}/${version}/${kind}`))[kind];
  } catch {
    return [`/: no schema for ${apiVersion} ${kind}`];
  }
  schemaErrors(Model, doc, errors);
  const file = nodePath.join(gatewayRoot, group, version, `${kind}.d.ts`);
  if (!gatewayFields(file)) return [...errors, `/: no field list for ${apiVersion} ${kind}`];
  unknownGatewayFields(doc, file, "", errors);
  return errors;
}

export async function validate(doc) {
  const errors = [];
  if (!isObject(doc)) return ["/: not an object"];
  const { apiVersion, kind } = doc;
  if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) ||
      typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return [`/: apiVersion ${JSON.stringify(apiVersion)} and kind ${JSON.stringify(kind)} name no API type`];
  }
  if (apiVersion.startsWith("gateway.networking.k8s.io/")) return validateGateway(doc, apiVersion, kind);
  let Model;
  try {
    Model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
  } catch {
    return [`/: no schema for ${apiVersion} ${kind}`];
  }
  schemaErrors(Model, doc, errors);
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
