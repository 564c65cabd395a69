using System.Text;
using System.Text.RegularExpressions;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// Path globs: absolute, <c>*</c> within one segment, <c>**</c> any number of segments, <c>?</c>
/// one character (never <c>/</c>). A list compiles to one regular expression.
/// </summary>
internal static class PathGlob
{
    /// <summary>Why <paramref name="globs"/> cannot be used, or null.</summary>
    public static string? Problem(IEnumerable<string> globs)
    {
        var bad = globs.Where(g => !g.StartsWith('/') && !g.StartsWith("**", StringComparison.Ordinal)).ToList();
        if (bad.Count > 0)
        {
            return $"globs must be absolute paths (or begin with **): {string.Join(", ", bad)}";
        }

        var braces = globs.Where(g => g.IndexOfAny(['{', '}', '[', ']']) >= 0).ToList();
        return braces.Count > 0 ? $"braces and brackets are not glob syntax here (list alternatives separately): {string.Join(", ", braces)}" : null;
    }

    public static Regex? Compile(IReadOnlyCollection<string> globs)
    {
        if (globs.Count == 0)
        {
            return null;
        }

        var pattern = new StringBuilder("^(?:");
        var first = true;
        foreach (var glob in globs)
        {
            if (!first)
            {
                pattern.Append('|');
            }

            first = false;
            for (var i = 0; i < glob.Length; i++)
            {
                var c = glob[i];
                if (c == '*' && i + 1 < glob.Length && glob[i + 1] == '*')
                {
                    var slashAfter = i + 2 < glob.Length && glob[i + 2] == '/';
                    var slashBefore = i > 0 && glob[i - 1] == '/';
                    if (slashBefore && i + 2 == glob.Length)
                    {
                        // "/dir/**": the directory itself and everything below it.
                        pattern.Length--;
                        pattern.Append("(?:/.*)?");
                    }
                    else if (slashAfter)
                    {
                        pattern.Append("(?:.*/)?");
                        i++;
                    }
                    else
                    {
                        pattern.Append(".*");
                    }

                    i++;
                }
                else if (c == '*')
                {
                    pattern.Append("[^/]*");
                }
                else if (c == '?')
                {
                    pattern.Append("[^/]");
                }
                else
                {
                    pattern.Append(Regex.Escape(c.ToString()));
                }
            }
        }

        pattern.Append(")$");
        return new Regex(pattern.ToString(), RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromMilliseconds(100));
    }

    /// <summary>The directory a glob's matches all lie under: its segments before the first wildcard.</summary>
    public static string Root(string glob)
    {
        var wildcard = glob.IndexOfAny(['*', '?']);
        var literal = wildcard < 0 ? glob : glob[..wildcard];
        var slash = literal.LastIndexOf('/');
        if (wildcard < 0)
        {
            // A plain file or directory: watch its directory (the file may not exist yet).
            return slash <= 0 ? "/" : literal[..slash];
        }

        return slash <= 0 ? "/" : literal[..slash];
    }
}

/// <summary>What fsmond does with a path, decided by the current settings' globs.</summary>
internal enum PathClass
{
    Ignored,
    Watched,
    ExecutableOnly,
}

/// <summary>The compiled globs of one version of the settings (replaced whole on UpdateConfig).</summary>
internal sealed class PathFilter
{
    private readonly Regex? _watch;
    private readonly Regex? _executable;
    private readonly Regex? _exclude;
    private readonly Regex? _integrity;

    public PathFilter(FsmondSettings settings)
    {
        _watch = PathGlob.Compile(settings.Watch.ToList());
        _executable = PathGlob.Compile(settings.ExecutableWatch.ToList());
        _exclude = PathGlob.Compile(settings.Exclude.ToList());
        _integrity = PathGlob.Compile(settings.Integrity.ToList());
        Roots = settings.Watch.Concat(settings.ExecutableWatch).Concat(settings.Integrity)
            .Select(PathGlob.Root).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        IntegrityRoots = settings.Integrity.Select(PathGlob.Root).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Directories every match lies under (what the kernel sources watch), sorted.</summary>
    public IReadOnlyList<string> Roots { get; }

    public IReadOnlyList<string> IntegrityRoots { get; }

    public PathClass Classify(string path)
    {
        if (_exclude?.IsMatch(path) == true)
        {
            return PathClass.Ignored;
        }

        if (_watch?.IsMatch(path) == true || _integrity?.IsMatch(path) == true)
        {
            return PathClass.Watched;
        }

        return _executable?.IsMatch(path) == true ? PathClass.ExecutableOnly : PathClass.Ignored;
    }

    public bool IsIntegrity(string path) => _integrity?.IsMatch(path) == true && _exclude?.IsMatch(path) != true;

    public bool IsTemporary(string path) => _executable?.IsMatch(path) == true;
}
