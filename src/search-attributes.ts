// The Keel* search attributes (docs/architecture.md, "Names"): typed keys shared by workflows, client and server setup.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const keelPhase = defineSearchAttributeKey('KeelPhase', SearchAttributeType.KEYWORD);
export const keelRollout = defineSearchAttributeKey('KeelRollout', SearchAttributeType.INT);
export const keelCheckpoint = defineSearchAttributeKey('KeelCheckpoint', SearchAttributeType.INT);
export const keelPreset = defineSearchAttributeKey('KeelPreset', SearchAttributeType.KEYWORD);
export const keelEvalScore = defineSearchAttributeKey('KeelEvalScore', SearchAttributeType.DOUBLE);

export const keelSearchAttributes = [keelPhase, keelRollout, keelCheckpoint, keelPreset, keelEvalScore];

/** `--search-attribute Name=Type` arguments of `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  const typeName: Record<string, string> = { KEYWORD: 'Keyword', INT: 'Int', DOUBLE: 'Double' };
  return keelSearchAttributes.flatMap((k) => ['--search-attribute', `${k.name}=${typeName[k.type] ?? k.type}`]);
}
