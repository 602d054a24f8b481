export async function runListenerFuzz(_i: number[]): Promise<{ summary: string }> { return { summary: 'todo' }; }
