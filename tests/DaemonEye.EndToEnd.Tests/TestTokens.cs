namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Registration tokens for collectors a test starts itself (outside the agent): the agent accepts
/// such a collector only with the token its configuration holds for the id
/// (security.registration_tokens). Give the agent <see cref="AgentSettings"/> and the collector
/// <see cref="For"/> (TestCollectorProcess does, as DAEMONEYE_REGISTRATION_TOKEN).
/// </summary>
internal static class TestTokens
{
    public static string For(string collectorId) => $"test-registration-token-{collectorId}";

    /// <summary>Agent environment settings configuring a token for each id.</summary>
    public static IEnumerable<KeyValuePair<string, string>> AgentSettings(params string[] collectorIds) =>
        collectorIds.Select(id => KeyValuePair.Create($"DAEMONEYE_SECURITY__REGISTRATION_TOKENS__{id}", For(id)));
}
