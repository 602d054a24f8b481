export function runCliParserFuzz(_i: number[]): string { return 'todo'; }
export async function runCliSpawnFuzz(_i: number[]): Promise<string> { return 'todo'; }
